package relay

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"
)

// deadKey names a device token of one app in the set of remembered dead
// tokens: the first 16 bytes of sha256(app, 0, device token). It holds no
// token; relays sharing a JetStream compute the same key.
type deadKey [16]byte

// deadKeyOf returns the key of device token token of app.
func deadKeyOf(app, token string) deadKey {
	var buf [256]byte // on the stack for the usual lengths: no allocation
	b := append(append(append(buf[:0], app...), 0), token...)
	sum := sha256.Sum256(b)
	return deadKey(sum[:len(deadKey{})])
}

// String is the key in hex, as stored in the spool's bucket.
func (k deadKey) String() string { return hex.EncodeToString(k[:]) }

// parseDeadKey reads a key written by String.
func parseDeadKey(s string) (deadKey, bool) {
	var k deadKey
	if len(s) != 2*len(k) {
		return k, false
	}
	_, err := hex.Decode(k[:], []byte(s))
	return k, err == nil
}

// deadTokens is the bounded set of device tokens found dead on a
// redelivery, when the Mattermost server had long been answered OK: the
// next push to one of them is answered REMOVE at once, so the server learns
// late, but learns. Each key is kept for ttl (spool.max_age) from when it
// was found dead, and at most max keys are kept, the oldest dropped first.
//
// Lookups are the hot path: while the set is empty they cost one atomic
// load; otherwise a hash of the token and a lock-free map read. Adds are
// rare (one per token found dead) and take a mutex.
type deadTokens struct {
	n         atomic.Int64 // keys in m
	nextSweep atomic.Int64 // Unix nanoseconds: when maybeSweep next sweeps
	m         sync.Map     // deadKey -> expiry (Unix nanoseconds, int64)
	ttl       time.Duration
	max       int

	mu    sync.Mutex  // guards order
	order []deadEntry // keys in the order added (a key added again appears twice); a queue
	head  int         // order[head:] is live
}

// deadEntry is one add, in deadTokens.order.
type deadEntry struct {
	key     deadKey
	expires int64
}

// maxDeadTokens bounds the remembered dead tokens.
const maxDeadTokens = 100_000

func newDeadTokens(ttl time.Duration, max int) *deadTokens {
	return &deadTokens{ttl: ttl, max: max}
}

// empty reports whether no token is remembered: the hot path's one check.
func (d *deadTokens) empty() bool { return d.n.Load() == 0 }

// len is how many tokens are remembered (expired ones not yet dropped
// included).
func (d *deadTokens) len() int { return int(d.n.Load()) }

// has reports whether k is remembered and not expired at now.
func (d *deadTokens) has(k deadKey, now time.Time) bool {
	v, ok := d.m.Load(k)
	return ok && now.UnixNano() < v.(int64)
}

// add remembers k as found dead at foundAt, until foundAt+ttl; it reports
// whether k was not remembered already. An add older than ttl is ignored.
// Expired keys and, past max, the oldest ones are dropped.
func (d *deadTokens) add(k deadKey, foundAt, now time.Time) bool {
	expires := foundAt.Add(d.ttl).UnixNano()
	if expires <= now.UnixNano() {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	prev, had := d.m.Load(k)
	if had && prev.(int64) >= expires {
		return false
	}
	d.m.Store(k, expires)
	if !had {
		d.n.Add(1)
	}
	d.order = append(d.order, deadEntry{key: k, expires: expires})
	d.trim(now)
	return !had
}

// trim drops, oldest first, the expired keys and those past max. Under mu.
func (d *deadTokens) trim(now time.Time) {
	for d.head < len(d.order) {
		e := d.order[d.head]
		v, ok := d.m.Load(e.key)
		current := ok && v.(int64) == e.expires // else a later add of the key is further on
		if current && e.expires > now.UnixNano() && int(d.n.Load()) <= d.max {
			break
		}
		if current {
			d.m.Delete(e.key)
			d.n.Add(-1)
		}
		d.order[d.head] = deadEntry{}
		d.head++
	}
	// Reuse the queue's front once half of it is spent.
	if d.head > 1024 && d.head > len(d.order)/2 {
		d.order = append(d.order[:0], d.order[d.head:]...)
		d.head = 0
	}
}

// sweep drops the expired keys; the relay calls it now and then, so that a
// set nobody adds to empties when its keys expire.
func (d *deadTokens) sweep(now time.Time) {
	if d.empty() {
		return
	}
	d.mu.Lock()
	d.trim(now)
	d.mu.Unlock()
}

// sweepEvery is how often maybeSweep sweeps.
const sweepEvery = 10 * time.Second

// maybeSweep sweeps when sweepEvery has passed since it last did: the
// lookups call it, so that a set nobody adds to empties as its keys expire
// and the lookups stop.
func (d *deadTokens) maybeSweep(now time.Time) {
	next := d.nextSweep.Load()
	if now.UnixNano() < next || !d.nextSweep.CompareAndSwap(next, now.Add(sweepEvery).UnixNano()) {
		return
	}
	d.sweep(now)
}
