package sandbox

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Fault makes a look-alike fail requests instead of answering normally.
// Faults are checked before authentication and validation, as an outage of
// the real service would be.
type Fault struct {
	// Status is the HTTP status to answer with (e.g. 500, 503, 429). 0 with
	// Reset false and Delay > 0 means "answer normally, but late".
	Status int
	// Reason is, for APNs, the "reason" in the JSON body (e.g.
	// "ServiceUnavailable", "TooManyRequests"); for FCM, the google.rpc
	// status (e.g. "UNAVAILABLE", "RESOURCE_EXHAUSTED", "INTERNAL"). Empty
	// means the usual one for Status.
	Reason string
	// RetryAfter, if > 0, is sent as a Retry-After header in whole seconds
	// (rounded up).
	RetryAfter time.Duration
	// Delay is how long to wait (or until the request's context ends, or the
	// sandbox is closed) before answering.
	Delay time.Duration
	// Reset aborts the request (an HTTP/2 stream reset) instead of answering.
	Reset bool
	// Count is how many requests fail before the sandbox answers normally
	// again; 0 means until Recover.
	Count int
	// Rate, when 0 < Rate < 1, makes only that fraction of the requests,
	// picked at random, fail (with Status or Reset); the others are answered
	// normally, after Delay all the same, and do not count toward Count. 0
	// (or 1 and more) fails every request. A fault that only delays (Status
	// 0, Reset false) delays every request whatever Rate is.
	Rate float64
}

// faultSlot holds the current fault. It is guarded by its owner's mutex.
type faultSlot struct {
	f      Fault
	active bool
	left   int        // requests still to fail when f.Count > 0
	rng    *rand.Rand // picks the failing requests for f.Rate; nil: math/rand/v2's
}

func (fs *faultSlot) set(f Fault) {
	*fs = faultSlot{f: f, active: true, left: f.Count, rng: fs.rng}
}

func (fs *faultSlot) clear() { *fs = faultSlot{rng: fs.rng} }

// take returns the fault that applies to the next request, if any, and
// consumes one of its Count when the request fails.
func (fs *faultSlot) take() (Fault, bool) {
	if !fs.active {
		return Fault{}, false
	}
	f := fs.f
	if f.fails() && f.Rate > 0 && f.Rate < 1 && fs.float64() >= f.Rate {
		// Not picked: a normal answer, as late as the others.
		return Fault{Delay: f.Delay}, f.Delay > 0
	}
	if f.Count > 0 {
		fs.left--
		if fs.left <= 0 {
			fs.clear()
		}
	}
	return f, true
}

// float64 returns a random number in [0, 1).
func (fs *faultSlot) float64() float64 {
	if fs.rng == nil {
		return rand.Float64()
	}
	return fs.rng.Float64()
}

// wait sleeps for f.Delay. It reports false when ctx ended or done was
// closed first: the request is then aborted, nobody is waiting for it.
func (f Fault) wait(ctx context.Context, done <-chan struct{}) bool {
	if f.Delay <= 0 {
		return true
	}
	t := time.NewTimer(f.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-done:
	}
	return false
}

// fails reports whether f answers with an error rather than normally.
func (f Fault) fails() bool { return f.Reset || f.Status != 0 }

// setRetryAfter sets the Retry-After header for f, if it has one.
func (f Fault) setRetryAfter(h http.Header) {
	if f.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
	}
}
