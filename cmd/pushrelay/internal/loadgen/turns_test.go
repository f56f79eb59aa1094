package loadgen_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/loadgen"
)

// report is a run of n requests in a second with the given p99 and, when
// cpu is not 0, that much relay CPU in all.
func report(n int64, p99, cpu time.Duration, rss int64) loadgen.Report {
	return loadgen.Report{Requests: n, Elapsed: time.Second, P50: p99 / 3, P99: p99, CPU: cpu, PeakRSS: rss, LiveOK: n}
}

func TestTurnLine(t *testing.T) {
	tests := []struct {
		name string
		turn loadgen.Turn
		want string
	}{
		{"with the direct client", loadgen.Turn{
			Direct:   report(20000, 4*time.Millisecond, 0, 0),
			Relay:    report(16000, 4400*time.Microsecond, 640*time.Millisecond, 41<<20),
			Delivery: loadgen.Accounting{Accepted: 16000, Delivered: 16000},
		}, "direct 20000/s p99 4ms | relay 16000/s p99 4.4ms, 40µs CPU, peak RSS 41.0 MB, lost 0 | ratios 0.80, 1.10"},
		{"the relay alone, its spool not drained", loadgen.Turn{
			Relay:    report(12000, 6123456*time.Nanosecond, 0, 0),
			Delivery: loadgen.Accounting{Accepted: 12000, Delivered: 11990},
			Drained:  errors.New("the relay's spool still held 10 notifications after 2m0s"),
		}, "relay 12000/s p99 6.12ms, lost 10 (spool not empty)"},
	}
	for _, tc := range tests {
		if got := tc.turn.Line(); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestTurnRatios(t *testing.T) {
	tp, p99 := loadgen.Turn{Relay: report(100, time.Millisecond, 0, 0)}.Ratios()
	if tp != 0 || p99 != 0 {
		t.Errorf("Ratios() without a direct run = %g, %g; want 0, 0", tp, p99)
	}
	tp, p99 = loadgen.Turn{Direct: report(200, time.Millisecond, 0, 0), Relay: report(100, 3*time.Millisecond, 0, 0)}.Ratios()
	if tp != 0.5 || p99 != 3 {
		t.Errorf("Ratios() = %g, %g; want 0.5, 3", tp, p99)
	}
}

func TestSummarize(t *testing.T) {
	turn := func(direct, relay int64, relayP99 time.Duration, lost int64, rss int64) loadgen.Turn {
		return loadgen.Turn{
			Direct:   report(direct, 4*time.Millisecond, 0, 0),
			Relay:    report(relay, relayP99, time.Duration(relay)*40*time.Microsecond, rss),
			Delivery: loadgen.Accounting{Accepted: relay, Delivered: relay - lost},
		}
	}
	tests := []struct {
		name  string
		turns []loadgen.Turn
		want  string
	}{
		{"an odd count: the middle one", []loadgen.Turn{
			turn(20000, 16000, 4400*time.Microsecond, 0, 40<<20),
			turn(22000, 18000, 4*time.Millisecond, 0, 42<<20),
			turn(18000, 14000, 6*time.Millisecond, 2, 41<<20),
		}, `== 3 turns: median (lowest–highest)
direct throughput          20000/s (18000/s–22000/s)
direct p99                 4ms (4ms–4ms)
relay throughput           16000/s (14000/s–18000/s)
relay p50                  1.47ms (1.33ms–2ms)
relay p99                  4.4ms (4ms–6ms)
relay CPU per notification 40µs (40µs–40µs)
relay/direct throughput    0.80 (0.78–0.82)
relay/direct p99           1.10 (1.00–1.50)
relay peak RSS             42.0 MB, the process's highest since it started
delivery                   accepted OK for live tokens 48000, delivered upstream 47998: lost 2, duplicates 0
`},
		{"an even count: between the middle two; a spool left full", []loadgen.Turn{
			turn(20000, 16000, 4*time.Millisecond, 0, 0),
			{Relay: report(10000, 5*time.Millisecond, 0, 0), Drained: errors.New("not empty")},
		}, `== 2 turns: median (lowest–highest)
direct throughput          20000/s (20000/s–20000/s)
direct p99                 4ms (4ms–4ms)
relay throughput           13000/s (10000/s–16000/s)
relay p50                  1.5ms (1.33ms–1.67ms)
relay p99                  4.5ms (4ms–5ms)
relay CPU per notification 40µs (40µs–40µs)
relay/direct throughput    0.80 (0.80–0.80)
relay/direct p99           1.00 (1.00–1.00)
delivery                   accepted OK for live tokens 16000, delivered upstream 16000: lost 0, duplicates 0 (the spool did not empty after 1 of the turns)
`},
	}
	for _, tc := range tests {
		var b strings.Builder
		loadgen.Summarize(&b, tc.turns)
		if b.String() != tc.want {
			t.Errorf("%s:\n got:\n%s\nwant:\n%s", tc.name, b.String(), tc.want)
		}
	}
}

func TestDrained(t *testing.T) {
	if err := loadgen.Drained([]loadgen.Turn{{}, {}}); err != nil {
		t.Errorf("Drained() = %v with every spool empty, want nil", err)
	}
	full := errors.New("the relay's spool still held 3 notifications after 2m0s")
	err := loadgen.Drained([]loadgen.Turn{{}, {Drained: full}})
	if !errors.Is(err, full) || !strings.Contains(err.Error(), "turn 2: ") {
		t.Errorf("Drained() = %v, want turn 2's error", err)
	}
}

// Summarize reads several turns of a rig: here two, measured as `pushrelay
// bench --sandbox -runs 2` does.
func ExampleSummarize() {
	turns := []loadgen.Turn{
		{Direct: report(21000, 4200*time.Microsecond, 0, 0), Relay: report(17800, 4600*time.Microsecond, 0, 0)},
		{Direct: report(19000, 4800*time.Microsecond, 0, 0), Relay: report(16200, 5*time.Millisecond, 0, 0)},
	}
	loadgen.Summarize(os.Stdout, turns)
	// Output:
	// == 2 turns: median (lowest–highest)
	// direct throughput          20000/s (19000/s–21000/s)
	// direct p99                 4.5ms (4.2ms–4.8ms)
	// relay throughput           17000/s (16200/s–17800/s)
	// relay p50                  1.6ms (1.53ms–1.67ms)
	// relay p99                  4.8ms (4.6ms–5ms)
	// relay/direct throughput    0.85 (0.85–0.85)
	// relay/direct p99           1.07 (1.04–1.10)
	// delivery                   accepted OK for live tokens 0, delivered upstream 0: lost 0, duplicates 0
}
