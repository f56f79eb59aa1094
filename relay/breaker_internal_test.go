package relay

import (
	"math/rand/v2"
	"testing"
	"time"
)

// breakerEvent is one attempt's result at a time from the start of a case.
type breakerEvent struct {
	at    time.Duration
	retry bool
}

// burst is n failures at the same instant at.
func burst(at time.Duration, n int) []breakerEvent {
	out := make([]breakerEvent, n)
	for i := range out {
		out[i] = breakerEvent{at: at, retry: true}
	}
	return out
}

// steady is an attempt every every, from from to to, each failing with
// probability failRate (drawn from rng).
func steady(from, to, every time.Duration, failRate float64, rng *rand.Rand) []breakerEvent {
	var out []breakerEvent
	for t := from; t < to; t += every {
		out = append(out, breakerEvent{at: t, retry: rng.Float64() < failRate})
	}
	return out
}

func TestBreakerOpensOnlyOnAProviderThatIsDown(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name     string
		events   []breakerEvent
		wantOpen bool
	}{
		{
			// One lost connection: everything in flight on it fails at once,
			// then the next connection answers.
			name:   "a burst of 60 failures at one instant, then successes",
			events: append(burst(100*time.Millisecond, 60), steady(101*time.Millisecond, 3*time.Second, time.Millisecond, 0, rng)...),
		},
		{
			name:   "two connections lost 0.5s apart, successes around them",
			events: append(append(burst(0, 40), steady(time.Millisecond, 500*time.Millisecond, time.Millisecond, 0, rng)...), burst(500*time.Millisecond, 40)...),
		},
		{
			name:   "5% random failures at 10,000 attempts/s for 10s",
			events: steady(0, 10*time.Second, 100*time.Microsecond, 0.05, rng),
		},
		{
			name:   "5% random failures at 20 attempts/s for 60s",
			events: steady(0, 60*time.Second, 50*time.Millisecond, 0.05, rng),
		},
		{
			name:     "provider down for 2s at 1,000 attempts/s",
			events:   steady(0, 2*time.Second, time.Millisecond, 1, rng),
			wantOpen: true,
		},
		{
			name:     "provider down: sequential 1s timeouts",
			events:   steady(time.Second, 6*time.Second, time.Second, 1, rng),
			wantOpen: true,
		},
		{
			name:   "four failures over 3s are too few",
			events: steady(0, 4*time.Second, time.Second, 1, rng),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b breaker
			t0 := time.Unix(1_000_000, 0)
			opened := 0
			for _, e := range c.events {
				if o, _ := b.record(e.retry, t0.Add(e.at)); o {
					opened++
				}
			}
			if want := map[bool]int{true: 1}[c.wantOpen]; opened != want || b.isOpen() != c.wantOpen {
				t.Errorf("opened %d times, open at the end %v; want %d, %v", opened, b.isOpen(), want, c.wantOpen)
			}
		})
	}
}

func TestBreakerProbesAndCloses(t *testing.T) {
	var b breaker
	t0 := time.Unix(1_000_000, 0)
	for i := range 20 { // down for 1.9s
		b.record(true, t0.Add(time.Duration(i)*100*time.Millisecond))
	}
	now := t0.Add(2 * time.Second)
	if !b.isOpen() || b.allow(now) {
		t.Fatal("a provider down for 1.9s: the breaker should be open and refuse an attempt right after opening")
	}
	if !b.allow(now.Add(3*time.Second)) || b.allow(now.Add(3*time.Second+time.Millisecond)) {
		t.Error("an open breaker lets exactly one probe through every 2s")
	}
	// A probe that fails keeps it open; any other answer closes it.
	if _, closed := b.record(true, now.Add(3*time.Second)); closed || !b.isOpen() {
		t.Error("a failed probe closed the breaker")
	}
	if _, closed := b.record(false, now.Add(4*time.Second)); !closed || b.isOpen() {
		t.Error("a success did not close the breaker")
	}
	if !b.allow(now.Add(4 * time.Second)) {
		t.Error("a closed breaker refused an attempt")
	}
	// Closed again, it needs a new sustained run to open.
	if o, _ := b.record(true, now.Add(5*time.Second)); o {
		t.Error("one failure after closing reopened the breaker")
	}
}
