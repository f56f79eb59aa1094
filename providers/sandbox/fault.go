package sandbox

import (
	"context"
	"math"
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
}

// faultSlot holds the current fault. It is guarded by its owner's mutex.
type faultSlot struct {
	f      Fault
	active bool
	left   int // requests still to fail when f.Count > 0
}

func (fs *faultSlot) set(f Fault) {
	*fs = faultSlot{f: f, active: true, left: f.Count}
}

func (fs *faultSlot) clear() { *fs = faultSlot{} }

// take returns the fault that applies to the next request, if any, and
// consumes one of its Count.
func (fs *faultSlot) take() (Fault, bool) {
	if !fs.active {
		return Fault{}, false
	}
	f := fs.f
	if f.Count > 0 {
		fs.left--
		if fs.left <= 0 {
			fs.clear()
		}
	}
	return f, true
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
