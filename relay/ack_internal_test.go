package relay

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestSentLogIsBounded(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name     string
		max      int
		ttl      time.Duration
		remember int           // ids id-0 ... id-(remember-1), one per step
		step     time.Duration // between two remembers
		at       time.Duration // when take asks, after the last remember
		want     map[string]bool
		wantLen  int // remembered after the remembers, before the takes
	}{
		{name: "under the cap everything is kept", max: 10, ttl: time.Hour, remember: 5, step: time.Second,
			want: map[string]bool{"id-0": true, "id-4": true}, wantLen: 5},
		{name: "at the cap the oldest go first", max: 3, ttl: time.Hour, remember: 5, step: time.Second,
			want: map[string]bool{"id-0": false, "id-1": false, "id-2": true, "id-4": true}, wantLen: 3},
		{name: "the cap holds across ring growth", max: 3000, ttl: time.Hour, remember: 10_000, step: time.Millisecond,
			want: map[string]bool{"id-6999": false, "id-7000": true, "id-9999": true}, wantLen: 3000},
		{name: "entries older than the ttl are forgotten", max: 100, ttl: time.Minute, remember: 3, step: 10 * time.Second,
			at: 45 * time.Second, want: map[string]bool{"id-0": false, "id-1": true, "id-2": true}, wantLen: 3},
		{name: "remembering sweeps expired entries", max: 100, ttl: 10 * time.Second, remember: 50, step: time.Second,
			want: map[string]bool{"id-38": false, "id-39": true, "id-49": true}, wantLen: 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newSentLog(tt.max, tt.ttl)
			last := t0
			for i := range tt.remember {
				last = t0.Add(time.Duration(i) * tt.step)
				l.remember(fmt.Sprintf("id-%d", i), "apple_rn", last)
				if l.size() > tt.max || l.n > tt.max || len(l.ring) > tt.max {
					t.Fatalf("after %d: %d entries, ring %d/%d, cap %d", i+1, l.size(), l.n, len(l.ring), tt.max)
				}
			}
			if got := l.size(); got != tt.wantLen {
				t.Errorf("%d entries remembered, want %d", got, tt.wantLen)
			}
			for id, want := range tt.want {
				app, at, ok := l.take(id, last.Add(tt.at))
				if ok != want {
					t.Errorf("take(%s) = %v, want %v", id, ok, want)
				}
				if ok && (app != "apple_rn" || at.IsZero()) {
					t.Errorf("take(%s) = %q %v", id, app, at)
				}
			}
		})
	}
}

func TestSentLogTakesOnce(t *testing.T) {
	l := newSentLog(4, time.Hour)
	t0 := time.Now()
	l.remember("a", "apple_rn", t0)
	l.remember("a", "android_rn", t0.Add(time.Second)) // remembered again: the newer wins
	for i := range 3 {
		l.remember(fmt.Sprintf("x%d", i), "apple_rn", t0.Add(2*time.Second))
	}
	// The ring dropped the first "a" slot; the second one still holds it.
	if app, _, ok := l.take("a", t0.Add(3*time.Second)); !ok || app != "android_rn" {
		t.Fatalf("take(a) = %q %v, want android_rn", app, ok)
	}
	if _, _, ok := l.take("a", t0.Add(3*time.Second)); ok {
		t.Error("an ack_id was taken twice")
	}
	if _, _, ok := l.take("", t0); ok {
		t.Error("an empty ack_id was found")
	}
	var none *sentLog
	none.remember("a", "x", t0) // a relay built by Check has none: no panic
}

func TestAckLatency(t *testing.T) {
	sent := time.UnixMilli(1_700_000_000_000)
	now := sent.Add(3 * time.Second)
	tests := []struct {
		name     string
		received int64
		want     time.Duration
	}{
		{"the phone's time", sent.Add(1200 * time.Millisecond).UnixMilli(), 1200 * time.Millisecond},
		{"none: now", 0, 3 * time.Second},
		{"before the send, within the skew: 0", sent.Add(-time.Second).UnixMilli(), 0},
		{"long before the send: now", sent.Add(-time.Hour).UnixMilli(), 3 * time.Second},
		{"in the future: now", now.Add(time.Hour).UnixMilli(), 3 * time.Second},
		{"negative: now", -5, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ackLatency(sent, tt.received, now); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestSentLogAgainstAModel runs random remembers and takes, across ring
// growth, wrap-around, expiry and repeated ids, against a plain map of
// what should be remembered.
func TestSentLogAgainstAModel(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4} {
		rng := rand.New(rand.NewPCG(seed, seed))
		const maxEntries, ttl = 3000, 2 * time.Second
		l := newSentLog(maxEntries, ttl)
		type entry struct {
			app string
			at  time.Time
		}
		model := map[string]entry{}
		var order []string // ids by remember, oldest first (with repeats)
		now := time.UnixMilli(1_700_000_000_000)
		for step := range 40_000 {
			now = now.Add(time.Duration(rng.IntN(400)) * time.Microsecond)
			if step == 1000 {
				// Everything expires before the ring first fills: it then
				// grows with its oldest entry away from slot 0.
				now = now.Add(3 * ttl)
			}
			id := fmt.Sprintf("id-%d", rng.IntN(8000))
			if rng.IntN(3) > 0 {
				app := []string{"apple_rn", "android_rn"}[rng.IntN(2)]
				l.remember(id, app, now)
				model[id] = entry{app, now}
				order = append(order, id)
				continue
			}
			app, at, ok := l.take(id, now)
			want, remembered := model[id]
			// What the model still holds: not expired and among the last
			// maxEntries remembers.
			recent := len(order) <= maxEntries || inLast(order, id, maxEntries)
			wantOK := remembered && now.Sub(want.at) <= ttl && recent
			delete(model, id)
			if ok && !remembered {
				t.Fatalf("seed %d step %d: took %s, never remembered (or taken already)", seed, step, id)
			}
			if ok != wantOK && (ok || now.Sub(want.at) < ttl-10*time.Millisecond) {
				t.Fatalf("seed %d step %d: take(%s) = %v, want %v", seed, step, id, ok, wantOK)
			}
			if ok && (app != want.app || at.Sub(want.at).Abs() >= time.Millisecond) {
				t.Fatalf("seed %d step %d: take(%s) = %s %v, want %s %v", seed, step, id, app, at, want.app, want.at)
			}
			if l.size() > maxEntries || l.indexed > l.n {
				t.Fatalf("seed %d step %d: %d indexed of %d in the ring", seed, step, l.indexed, l.n)
			}
		}
	}
}

// inLast reports whether id was remembered among the last k remembers.
func inLast(order []string, id string, k int) bool {
	for _, o := range order[len(order)-k:] {
		if o == id {
			return true
		}
	}
	return false
}
