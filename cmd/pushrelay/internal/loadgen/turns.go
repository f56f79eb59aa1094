package loadgen

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Turn is one turn of a measurement on a Rig: the direct client's run (when
// the turn has one), then the relay's, and what the relay delivered.
//
// On a machine shared with other work, one turn's figures move with how
// fast the machine happens to be: the direct run, measured just before on
// the same look-alikes, says how fast that was. Several turns, summarized,
// tell the relay's figures from the machine's.
type Turn struct {
	// Direct is zero when the turn measured the relay alone.
	Direct Report
	Relay  Report
	// Delivery compares what the relay accepted with what reached the
	// look-alikes, once its spool emptied.
	Delivery Accounting
	// Drained is nil when the relay's spool emptied after the run, the
	// reason it did not otherwise.
	Drained error
}

// Ratios returns the relay's throughput and p99 latency over the direct
// client's; 0 and 0 when the turn has no direct run.
func (t Turn) Ratios() (throughput, p99 float64) {
	if t.Direct.Throughput() <= 0 || t.Direct.P99 <= 0 {
		return 0, 0
	}
	return t.Relay.Throughput() / t.Direct.Throughput(), float64(t.Relay.P99) / float64(t.Direct.P99)
}

// Line is the turn in one line, for a person.
func (t Turn) Line() string {
	s := ""
	if t.Direct.Requests > 0 {
		s = fmt.Sprintf("direct %.0f/s p99 %s | ", t.Direct.Throughput(), roundLatency(t.Direct.P99))
	}
	s += fmt.Sprintf("relay %.0f/s p99 %s", t.Relay.Throughput(), roundLatency(t.Relay.P99))
	if t.Relay.CPU > 0 {
		s += fmt.Sprintf(", %s CPU, peak RSS %s", roundCPU(t.Relay.CPUPerNotification()), megabytes(t.Relay.PeakRSS))
	}
	s += fmt.Sprintf(", lost %d", t.Delivery.Lost())
	if t.Drained != nil {
		s += " (spool not empty)"
	}
	if tp, p99 := t.Ratios(); tp > 0 {
		s += fmt.Sprintf(" | ratios %.2f, %.2f", tp, p99)
	}
	return s
}

// Summarize writes, for each figure of the turns, its median and its
// lowest and highest values; then the relay's peak RSS, and what was lost
// or delivered twice over all of them.
func Summarize(w io.Writer, turns []Turn) {
	if len(turns) == 0 {
		return
	}
	fmt.Fprintf(w, "== %d turns: median (lowest–highest)\n", len(turns))
	figure := func(name string, value func(Turn) float64, format func(float64) string) {
		vs := make([]float64, 0, len(turns))
		for _, t := range turns {
			if v := value(t); v > 0 {
				vs = append(vs, v)
			}
		}
		if len(vs) == 0 {
			return
		}
		s := spreadOf(vs)
		fmt.Fprintf(w, "%-26s %s (%s–%s)\n", name, format(s.median), format(s.min), format(s.max))
	}
	rate := func(v float64) string { return fmt.Sprintf("%.0f/s", v) }
	latency := func(v float64) string { return roundLatency(time.Duration(v)).String() }
	ratio := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	figure("direct throughput", func(t Turn) float64 { return t.Direct.Throughput() }, rate)
	figure("direct p99", func(t Turn) float64 { return float64(t.Direct.P99) }, latency)
	figure("relay throughput", func(t Turn) float64 { return t.Relay.Throughput() }, rate)
	figure("relay p50", func(t Turn) float64 { return float64(t.Relay.P50) }, latency)
	figure("relay p99", func(t Turn) float64 { return float64(t.Relay.P99) }, latency)
	figure("relay CPU per notification", func(t Turn) float64 { return float64(t.Relay.CPUPerNotification()) },
		func(v float64) string { return roundCPU(time.Duration(v)).String() })
	figure("relay/direct throughput", func(t Turn) float64 { tp, _ := t.Ratios(); return tp }, ratio)
	figure("relay/direct p99", func(t Turn) float64 { _, p99 := t.Ratios(); return p99 }, ratio)

	var total Accounting
	var peak int64
	undrained := 0
	for _, t := range turns {
		peak = max(peak, t.Relay.PeakRSS)
		total.Accepted += t.Delivery.Accepted
		total.Delivered += t.Delivery.Delivered
		if t.Drained != nil {
			undrained++
		}
	}
	if peak > 0 {
		fmt.Fprintf(w, "%-26s %s, the process's highest since it started\n", "relay peak RSS", megabytes(peak))
	}
	fmt.Fprintf(w, "delivery                   %s", total)
	if undrained > 0 {
		fmt.Fprintf(w, " (the spool did not empty after %d of the turns)", undrained)
	}
	fmt.Fprintln(w)
}

// Drained returns the turns' spool errors, nil when every turn's spool
// emptied.
func Drained(turns []Turn) error {
	var errs []error
	for i, t := range turns {
		if t.Drained != nil {
			errs = append(errs, fmt.Errorf("turn %d: %w", i+1, t.Drained))
		}
	}
	return errors.Join(errs...)
}

// spread is a figure's median, lowest and highest value over turns.
type spread struct{ median, min, max float64 }

// spreadOf returns the spread of vs (not empty); the median of an even
// count is the mean of the two middle values.
func spreadOf(vs []float64) spread {
	vs = slices.Clone(vs)
	slices.Sort(vs)
	n := len(vs)
	median := vs[n/2]
	if n%2 == 0 {
		median = (vs[n/2-1] + vs[n/2]) / 2
	}
	return spread{median: median, min: vs[0], max: vs[n-1]}
}

// roundLatency rounds a latency for a person: 10 µs steps.
func roundLatency(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

// roundCPU rounds a CPU time per notification for a person: 0.1 µs steps.
func roundCPU(d time.Duration) time.Duration { return d.Round(100 * time.Nanosecond) }
