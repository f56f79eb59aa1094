package relay

import (
	"sync"
	"sync/atomic"
	"time"
)

// breaker notices a provider that is down, so that new notifications for
// it skip the doomed attempt and go straight to the spool, and the
// Mattermost server never waits on a dead upstream.
//
// What opens it: a run of attempts that all failed in a way worth retrying
// (providers.Retry: 5xx, 429, timeout, connection error), with no other
// answer in between, that holds at least breakerMinFailures failures and
// lasts at least breakerMinSpan from its first failure to its latest. Both
// bounds matter: the 20-60 requests in flight on one connection that dies
// fail at one instant (a long run, no span), and random 503s are broken up
// by the successes around them (a span, but never a long run); only a
// provider that keeps failing across fresh connections, for a while, makes
// both.
//
// While open, one direct attempt every probeEvery still goes through (the
// probe), and the spool's redeliveries keep trying.
//
// What closes it: any answer that is not "retry later" (delivered, token
// dead, or a permanent failure), from a probe, a redelivery or a direct
// attempt. The same answer also ends a run of failures while it is closed.
type breaker struct {
	open      atomic.Bool
	failing   atomic.Bool  // a run of failures is under way: the success path has something to reset
	runLen    atomic.Int32 // failures in the current run, for run
	lastProbe atomic.Int64 // Unix nanoseconds of the last attempt let through while open

	mu    sync.Mutex // guards the run, on the failure path only
	runN  int        // failures in the current run
	first time.Time  // when the run's first failure was seen
}

const (
	// breakerMinFailures is how many failures in a row, at least, open the breaker.
	breakerMinFailures = 5
	// breakerMinSpan is how long, at least, a run of failures must last to
	// open the breaker.
	breakerMinSpan = time.Second
	// probeEvery is how often an open breaker lets a direct attempt through.
	probeEvery = 2 * time.Second
)

// allow reports whether a direct attempt should be made now.
func (b *breaker) allow(now time.Time) bool {
	if !b.open.Load() {
		return true
	}
	last := b.lastProbe.Load()
	if now.UnixNano()-last < int64(probeEvery) {
		return false
	}
	return b.lastProbe.CompareAndSwap(last, now.UnixNano())
}

// run is how many attempts in a row have failed, as last recorded.
func (b *breaker) run() int { return int(b.runLen.Load()) }

// isOpen reports whether the breaker is open.
func (b *breaker) isOpen() bool { return b.open.Load() }

// record notes an attempt's result, seen at now, and reports a change of
// state. The path of an attempt that did not fail touches no shared
// memory but two atomic loads while no run of failures is under way.
func (b *breaker) record(retry bool, now time.Time) (opened, closed bool) {
	if !retry {
		if !b.failing.Load() && !b.open.Load() {
			return false, false
		}
		b.mu.Lock()
		b.runN, b.first = 0, time.Time{}
		b.failing.Store(false)
		b.runLen.Store(0)
		b.mu.Unlock()
		return false, b.open.CompareAndSwap(true, false)
	}
	b.mu.Lock()
	if b.runN == 0 {
		b.first = now
		b.failing.Store(true)
	}
	b.runN++
	b.runLen.Store(int32(min(b.runN, 1<<30)))
	down := b.runN >= breakerMinFailures && now.Sub(b.first) >= breakerMinSpan
	b.mu.Unlock()
	if down && b.open.CompareAndSwap(false, true) {
		b.lastProbe.Store(now.UnixNano())
		return true, false
	}
	return false, false
}
