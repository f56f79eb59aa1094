package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		name                 string
		floor, live, scanned uint64
		base, want           int
	}{
		{"no collection yet", 11 * mib, 0, 200 << 10, 50, 50},
		{"live heap above the floor", 11 * mib, 12 * mib, 14 * mib, 50, 50},
		{"live heap at the floor", 11 * mib, 11 * mib, 12 * mib, 50, 50},
		{"base reaches the floor", 11 * mib, 8 * mib, 9 * mib, 50, 50},
		// 6 MiB more over 7 MiB scanned: 85.7%, rounded up.
		{"small live heap", 11 * mib, 5 * mib, 7 * mib, 50, 86},
		{"exact", 12 * mib, 4 * mib, 8 * mib, 50, 100},
		// 10.5 MiB over 0.75: 1400%, but at 275% the least goal
		// (4 MiB * 2.75) already reaches 11 MiB.
		{"nearly empty heap", 11 * mib, mib / 2, 3 * mib / 4, 50, 275},
		// 10 MiB / 4 MiB: 250.01%, rounded up so that the least goal
		// reaches the floor.
		{"least goal rounded up", 10*mib + 1, mib / 2, 3 * mib / 4, 50, 251},
		{"higher base", 11 * mib, 5 * mib, 6 * mib, 100, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := percent(tt.floor, tt.live, tt.scanned, tt.base); got != tt.want {
				t.Errorf("percent(%d, %d, %d, %d) = %d, want %d", tt.floor, tt.live, tt.scanned, tt.base, got, tt.want)
			}
		})
	}
}

func readMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// cleanupsDone waits until every cleanup queued so far has run.
func cleanupsDone(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for readMetric("/gc/cleanups/executed:cleanups") < readMetric("/gc/cleanups/queued:cleanups") {
		if time.Now().After(deadline) {
			t.Fatal("the runtime's cleanups did not run")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFloorFollowsEachCollection(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	// A live heap of 8 MiB and a floor 16 MiB above it: every collection
	// must raise GOGC to about 200 for the next goal to reach the floor.
	ballast := make([]byte, 8<<20)
	defer runtime.KeepAlive(ballast)
	runtime.GC()
	floor := readMetric("/gc/heap/live:bytes") + 16<<20
	adjusted := make(chan int, 16)
	f := Start(floor, 50)
	f.mu.Lock()
	f.adjusted = func(p int) { adjusted <- p }
	f.mu.Unlock()

	for range 3 {
		runtime.GC()
		var p int
		select {
		case p = <-adjusted:
		case <-time.After(10 * time.Second):
			t.Fatal("no adjustment after a collection")
		}
		if p < 150 || p > 250 {
			t.Errorf("GOGC %d after a collection, want it raised to about 200", p)
		}
		if gogc := readMetric("/gc/gogc:percent"); gogc != uint64(p) {
			t.Errorf("runtime GOGC %d, adjusted to %d", gogc, p)
		}
		// GOGC is a whole percent: the goal is the floor to within 1%
		// of the bytes scanned.
		scanned := readMetric("/gc/heap/live:bytes") + readMetric("/gc/scan/stack:bytes") + readMetric("/gc/scan/globals:bytes")
		if goal := readMetric("/gc/heap/goal:bytes"); goal+scanned/100 < floor || goal > floor+scanned/100 {
			t.Errorf("heap goal %d bytes, want the floor of %d to within %d", goal, floor, scanned/100)
		}
	}

	f.Stop()
	if gogc := readMetric("/gc/gogc:percent"); gogc != 50 {
		t.Errorf("GOGC %d after Stop, want the base 50", gogc)
	}
	runtime.GC()
	cleanupsDone(t)
	select {
	case p := <-adjusted:
		t.Errorf("adjusted to %d after Stop", p)
	default:
	}
	if gogc := readMetric("/gc/gogc:percent"); gogc != 50 {
		t.Errorf("GOGC %d after Stop and a collection, want the base 50", gogc)
	}
}
