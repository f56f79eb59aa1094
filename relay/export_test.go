package relay

import "time"

// SetEgressProbeEvery makes /readyz probe a misconfigured egress every d,
// for the test's duration.
func SetEgressProbeEvery(t interface{ Cleanup(func()) }, d time.Duration) {
	old := egressProbeEvery
	egressProbeEvery = d
	t.Cleanup(func() { egressProbeEvery = old })
}
