package spool

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Why the spool's cost does not grow with its depth.
//
// An entry waiting in the stream and never fetched costs disk only. What
// costs memory is what JetStream tracks per entry: a delivery not acked
// yet (handed back with a delay, it stays pending in the consumer, with
// its delivery count, until it comes back) and a message id in the
// stream's duplicate window. So:
//
//   - The duplicate window is short (dedupWindow): it only guards a Put
//     that is retried, not every id for max_age.
//   - While an app's deliveries keep failing (failThreshold in a row), its
//     worker stops fetching in batches and probes: one entry at a time,
//     the next one a backoff step later (capped at probeCap, longer when
//     the provider asked for it with Retry-After). Everything else waits
//     in the stream, unfetched: a million entries wait at the cost of a
//     few hundred. New Puts are plain appends, whatever the depth.
//   - An entry fetched before it is due is handed back with a delay, and
//     stays pending meanwhile: each app's consumer has at most maxPending
//     entries pending (handed out, in flight or handed back); beyond, new
//     entries wait in the stream until some are finished.
//   - The first answer that is not "retry later" ends it: the worker goes
//     back to batches and drains the stream in its order, oldest first,
//     at the pace deliver allows. Once the spool is empty and JetStream
//     has let go of its block caches, the memory the drain used goes back
//     to the system (giveBack).
const (
	// dedupWindow is how long the stream remembers a Put's message id.
	// Mattermost does not retry a push, and a Put is not retried after
	// its answer is lost, so a second is enough; each id costs about 150
	// bytes of heap (20 MiB at 17,000 Puts/s for 5 s, 4 MiB for 1 s).
	dedupWindow = time.Second
	// failThreshold is the number of "retry later" verdicts in a row after
	// which an app's worker only probes.
	failThreshold = 8
	// probeCap bounds the wait between two probes (Retry-After excepted),
	// so that a provider that comes back is noticed within seconds.
	probeCap = 5 * time.Second
	// maxPending bounds the entries of one app that JetStream holds as
	// handed out and not acked (about 100 bytes each): the in-flight
	// deliveries of every relay, entries handed back because not due, and
	// the few probed entries waiting out their backoff.
	maxPending = 4096
	// cacheLinger is how long after the drain the spool waits before giving
	// memory back: JetStream keeps a block's cache for 10s after its last
	// use.
	cacheLinger = 15 * time.Second
)

// pacer tracks one app's recent verdicts and tells its worker whether to
// fetch in batches or to probe.
type pacer struct {
	mu         sync.Mutex
	failures   int           // "retry later" verdicts in a row
	probes     int           // failed probes in a row
	retryAfter time.Duration // the longest Retry-After since the last probe
}

// failing reports whether the worker should probe instead of fetching in
// batches.
func (p *pacer) failing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failures >= failThreshold
}

// done notes an answer that is not "retry later" (delivered, dead token,
// failed for good): the provider answers. It reports whether the app was
// failing until now.
func (p *pacer) done() (recovered bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	recovered = p.failures >= failThreshold
	p.failures, p.probes, p.retryAfter = 0, 0, 0
	return recovered
}

// retry notes a "retry later" verdict. It reports whether this one made
// the app failing.
func (p *pacer) retry(retryAfter time.Duration) (started bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures++
	p.retryAfter = max(p.retryAfter, retryAfter)
	return p.failures == failThreshold
}

// nextProbe is the wait before the next probe after one that failed: the
// backoff of the failed probes so far, capped at probeCap, or the
// provider's Retry-After when longer.
func (p *pacer) nextProbe(b Backoff) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probes++
	d := min(b.Delay(p.probes), probeCap)
	d = max(d, p.retryAfter)
	p.retryAfter = 0
	return d
}

// interval is the wait between probes now, without counting one more.
func (p *pacer) interval(b Backoff) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return min(b.Delay(max(p.probes, 1)), probeCap)
}

// givingBack is set while a giveBackAfterDrain waits: giving memory back
// is for the whole process, so one at a time.
var givingBack atomic.Bool

// giveBackAfterDrain waits, in the background, until the spool is empty,
// then cacheLinger more, and returns the memory the drain used to the
// system: without it, an idle relay would keep the drain's high-water
// mark for minutes (until a forced collection and the scavenger get to
// it). It gives up when the spool closes.
func (s *Spool) giveBackAfterDrain() {
	if !givingBack.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer givingBack.Store(false)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.fetchCtx.Done():
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(s.fetchCtx, time.Second)
			n, _, err := s.Stats(ctx)
			cancel()
			if err == nil && n == 0 {
				break
			}
		}
		select {
		case <-s.fetchCtx.Done():
			return
		case <-time.After(cacheLinger):
		}
		// JetStream's block buffers go back to sync.Pools, which a first
		// collection only moves aside: the second frees them.
		runtime.GC()
		debug.FreeOSMemory()
		s.log.Debug("spool: drained; memory given back")
	}()
}
