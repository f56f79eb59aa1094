package sandbox

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestFaultRate takes 10000 requests through a fault slot with a seeded
// source and counts the ones that fail and the ones that are only delayed.
func TestFaultRate(t *testing.T) {
	const n = 10000
	tests := []struct {
		name             string
		f                Fault
		minFail, maxFail int
		wantDelayed      bool // every request that does not fail is delayed
	}{
		{"no rate fails every request", Fault{Status: 503}, n, n, false},
		{"rate 1 fails every request", Fault{Status: 503, Rate: 1}, n, n, false},
		{"5%", Fault{Status: 503, Rate: 0.05}, 400, 600, false},
		{"half, resets", Fault{Reset: true, Rate: 0.5}, 4500, 5500, false},
		{"5% of slow requests", Fault{Status: 503, Rate: 0.05, Delay: 20 * time.Millisecond}, 400, 600, true},
		{"count bounds the failures, not the requests", Fault{Status: 503, Rate: 0.05, Count: 10}, 10, 10, false},
		{"a delay alone ignores the rate", Fault{Delay: time.Millisecond, Rate: 0.05}, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := faultSlot{rng: rand.New(rand.NewPCG(1, 2))}
			fs.set(tc.f)
			failed, delayed := 0, 0
			for range n {
				f, ok := fs.take()
				switch {
				case ok && f.fails():
					failed++
					if f != tc.f {
						t.Fatalf("a failing request got %+v, want %+v", f, tc.f)
					}
				case ok:
					delayed++
					if f.Delay != tc.f.Delay {
						t.Fatalf("a normal request got %+v, want a delay of %v", f, tc.f.Delay)
					}
				}
			}
			if failed < tc.minFail || failed > tc.maxFail {
				t.Errorf("%d of %d requests failed, want %d to %d", failed, n, tc.minFail, tc.maxFail)
			}
			wantDelayed := 0
			if tc.wantDelayed {
				wantDelayed = n - failed
			}
			if delayed != wantDelayed {
				t.Errorf("%d of the %d normal answers were delayed, want %d", delayed, n-failed, wantDelayed)
			}
		})
	}
}
