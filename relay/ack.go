package relay

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"math"
	"math/bits"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/relay/wire"
)

const (
	// sentLogSize bounds how many delivered ack_ids the relay remembers.
	sentLogSize = 100_000
	// ackUnknownApp labels acks for ack_ids the relay does not remember
	// (delivered before a restart, by another relay, or forgotten).
	ackUnknownApp = "unknown"
	// ackClockSkew is how far the phone's received_at may lie outside
	// [sent, now] and still be believed.
	ackClockSkew = 2 * time.Second
	// maxAckForwards bounds the acks on their way upstream at once; beyond
	// it an ack is not forwarded (and counted).
	maxAckForwards = 64
)

// Ack takes a mobile app's delivery receipt, as the Mattermost server
// passes it on: it counts it in pushrelay_acks_total{app}, times it from
// the moment the relay delivered that ack_id in
// pushrelay_delivery_latency_seconds{app}, and, when the notification went
// to an upstream push proxy, forwards the ack there in the background under
// delivery.timeout. It never waits on the network.
func (r *Relay) Ack(a wire.Ack) {
	now := time.Now()
	st := r.state.Load()
	var target *app
	if name, sent, ok := r.sent.take(a.ID, now); ok {
		latency := ackLatency(sent, a.ReceivedAt, now)
		r.metrics.acked(name, latency)
		target = st.byName(name)
		r.log.LogAttrs(context.Background(), slog.LevelDebug, "ack", slog.String("app", name), slog.Duration("latency", latency))
	} else {
		r.metrics.acked(ackUnknownApp, -1)
		platform, _ := wire.SplitPlatform(a.Platform)
		target = st.route(platform)
		r.log.LogAttrs(context.Background(), slog.LevelDebug, "ack for a notification this relay does not remember")
	}
	if target != nil {
		if fwd, ok := target.send.(acker); ok {
			r.forwardAck(target, fwd, a, st.timeout)
		}
	}
}

// acker is a provider that takes acks too: an upstream push proxy.
type acker interface {
	Ack(ctx context.Context, a wire.Ack) error
}

// ackLatency is the time from sent to the phone's receipt: received_at
// (Unix milliseconds, the phone's clock) when it is plausible, else now.
func ackLatency(sent time.Time, receivedAtMs int64, now time.Time) time.Duration {
	if receivedAtMs > 0 {
		received := time.UnixMilli(receivedAtMs)
		if !received.Before(sent.Add(-ackClockSkew)) && !received.After(now.Add(ackClockSkew)) {
			return max(received.Sub(sent), 0)
		}
	}
	return max(now.Sub(sent), 0)
}

// ackForwarder runs the acks on their way upstream: at most maxAckForwards
// at once, each under a deadline, all waited for by Shutdown.
type ackForwarder struct {
	slots chan struct{}
	wg    sync.WaitGroup
}

func newAckForwarder() *ackForwarder {
	return &ackForwarder{slots: make(chan struct{}, maxAckForwards)}
}

// forwardAck sends a to a's upstream in the background, fire and forget;
// failures are counted in pushrelay_provider_errors_total{reason="ack_..."}.
func (r *Relay) forwardAck(a *app, fwd acker, ack wire.Ack, timeout time.Duration) {
	select {
	case r.acks.slots <- struct{}{}:
	default:
		r.metrics.providerErrors.WithLabelValues(a.provider, "ack_dropped").Inc()
		return
	}
	r.acks.wg.Go(func() {
		defer func() { <-r.acks.slots }()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := fwd.Ack(ctx, ack); err != nil {
			reason := "ack_other"
			if ae, ok := errors.AsType[*providers.AckError](err); ok {
				reason = ae.Reason
			}
			r.metrics.providerErrors.WithLabelValues(a.provider, reason).Inc()
			r.log.Debug("ack not forwarded", "app", a.name, "provider", a.provider, "reason", reason, "error", err.Error())
		}
	})
}

// waitAcks waits for the acks on their way upstream, until ctx ends.
func (r *Relay) waitAcks(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		r.acks.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sentLog remembers, by ack_id, when and by which app each notification
// was delivered, so that its ack can be timed. It holds at most max
// entries (the oldest goes first) and forgets an entry after ttl
// (spool.max_age: no ack is expected later). Every operation is O(1)
// (amortized) under a short lock.
//
// It is compact, as it holds the last max deliveries (100,000 at about
// 26 bytes each, where a Go map and a ring took twice that):
//   - an ack_id is kept as its 64-bit hash (a collision, at odds of about
//     1e-10 when full, only mistimes one ack), and the time as Unix
//     milliseconds modulo 2^32;
//   - the ring holds the entries in the order they were remembered;
//   - index, an open-addressed table with linear probing, holds their
//     places in the ring (plus one; 0 is an empty cell). It has at least
//     twice as many cells as the ring, so probes stay short.
type sentLog struct {
	mu   sync.Mutex
	max  int
	ttl  time.Duration
	seed maphash.Seed
	apps []string // app names, indexed by sentSlot.app
	// ring holds n entries, from head on, wrapping around. It grows up to
	// max.
	ring    []sentSlot
	head, n int
	index   []uint32
	indexed int // cells in use in index
}

type sentSlot struct {
	id   uint64 // hash of the ack_id
	when uint32 // Unix milliseconds, modulo 2^32
	app  uint16 // index in apps
}

const (
	// sweepPerRemember bounds how many expired entries one remember
	// forgets: enough to keep up (each remember adds one), few enough to
	// stay O(1).
	sweepPerRemember = 4
	// sentLogMaxTTL is the longest a sentLog keeps an entry: its times are
	// 32-bit milliseconds, compared as signed differences.
	sentLogMaxTTL = math.MaxInt32 * time.Millisecond // 24.8 days
)

func newSentLog(max int, ttl time.Duration) *sentLog {
	return &sentLog{max: max, ttl: min(ttl, sentLogMaxTTL), seed: maphash.MakeSeed()}
}

// age is how long before now (Unix milliseconds) an entry was remembered.
func (s sentSlot) age(now int64) time.Duration {
	return time.Duration(int32(uint32(now)-s.when)) * time.Millisecond
}

// remember notes that the notification with ack_id id was delivered by app
// at at.
func (l *sentLog) remember(id, app string, at time.Time) {
	if l == nil || id == "" || l.max <= 0 {
		return
	}
	key, now := maphash.String(l.seed, id), at.UnixMilli()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := 0; i < sweepPerRemember && l.n > 0 && l.ring[l.head].age(now) > l.ttl; i++ {
		l.pop()
	}
	if l.n == l.max {
		l.pop()
	}
	l.push(sentSlot{id: key, when: uint32(now), app: l.appIndex(app)})
}

// appIndex returns the index of app in l.apps, adding it if new. Apps are
// few (the configured ones).
func (l *sentLog) appIndex(app string) uint16 {
	for i, a := range l.apps {
		if a == app {
			return uint16(i)
		}
	}
	l.apps = append(l.apps, app)
	return uint16(len(l.apps) - 1)
}

// take returns and forgets the app and time remembered for id, if any and
// not older than ttl at now.
func (l *sentLog) take(id string, now time.Time) (app string, at time.Time, ok bool) {
	if l == nil || id == "" {
		return "", time.Time{}, false
	}
	key := maphash.String(l.seed, id)
	l.mu.Lock()
	cell, ok := l.find(key)
	var s sentSlot
	if ok {
		s = l.ring[l.index[cell]-1]
		l.unindex(cell)
		app = l.apps[s.app]
	}
	l.mu.Unlock()
	if !ok {
		return "", time.Time{}, false
	}
	age := s.age(now.UnixMilli())
	if age > l.ttl {
		return "", time.Time{}, false
	}
	return app, now.Truncate(time.Millisecond).Add(-age), true
}

// size reports how many ack_ids are remembered.
func (l *sentLog) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.indexed
}

// push appends s at the new end of the ring, growing it (up to max) when
// full, and points s.id at it. The caller has made room when n == max.
func (l *sentLog) push(s sentSlot) {
	if l.n == len(l.ring) {
		l.grow(min(max(2*len(l.ring), 1024), l.max))
	}
	pos := (l.head + l.n) % len(l.ring)
	l.ring[pos] = s
	l.n++
	cell, found := l.find(s.id)
	if !found {
		l.indexed++
	}
	l.index[cell] = uint32(pos) + 1
}

// pop forgets the oldest slot, and its id unless it was taken or
// remembered again since (it then points at a newer slot).
func (l *sentLog) pop() {
	s := l.ring[l.head]
	if cell, ok := l.find(s.id); ok && int(l.index[cell])-1 == l.head {
		l.unindex(cell)
	}
	l.ring[l.head] = sentSlot{}
	l.head = (l.head + 1) % len(l.ring)
	l.n--
}

// grow moves the ring to size slots, its oldest at 0, and rebuilds the
// index for it.
func (l *sentLog) grow(size int) {
	ring := make([]sentSlot, size)
	for i := range l.n {
		ring[i] = l.ring[(l.head+i)%len(l.ring)]
	}
	old, oldLen, oldHead := l.index, len(l.ring), l.head
	l.ring, l.head = ring, 0
	l.index = make([]uint32, 1<<bits.Len(uint(2*size-1))) // a power of two ≥ 2*size
	for _, v := range old {
		if v == 0 {
			continue
		}
		pos := (int(v) - 1 - oldHead + oldLen) % oldLen
		cell, _ := l.find(l.ring[pos].id)
		l.index[cell] = uint32(pos) + 1
	}
}

// find returns the index cell that holds key, or the empty cell where it
// would go.
func (l *sentLog) find(key uint64) (cell int, found bool) {
	if len(l.index) == 0 {
		return 0, false
	}
	mask := len(l.index) - 1
	for i := int(key) & mask; ; i = (i + 1) & mask {
		v := l.index[i]
		if v == 0 {
			return i, false
		}
		if l.ring[v-1].id == key {
			return i, true
		}
	}
}

// unindex empties cell and moves back the cells after it that would
// otherwise no longer be found (deletion without tombstones).
func (l *sentLog) unindex(cell int) {
	mask := len(l.index) - 1
	for j := (cell + 1) & mask; l.index[j] != 0; j = (j + 1) & mask {
		home := int(l.ring[l.index[j]-1].id) & mask
		// j's entry stays unless its home lies cyclically in (cell, j].
		if (cell < j && (home <= cell || home > j)) || (cell > j && home <= cell && home > j) {
			l.index[cell] = l.index[j]
			cell = j
		}
	}
	l.index[cell] = 0
	l.indexed--
}

// ackIncomplete answers an ack that lacks id, platform or type (named by
// missing) as mattermost-push-proxy does: HTTP 200 with status FAIL. A 4xx
// there makes the Mattermost server answer the app with a 500. It logs the
// refusal with the missing field's name, never a value of the ack.
func (s *Server) ackIncomplete(c *fasthttp.RequestCtx, missing string) {
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "ack refused: a required field is missing",
		slog.String("missing", missing), slog.String("route", routeAck), slog.String("peer", peerAddr(c).String()))
	answer(c, wire.Fail(errors.New(missing+" is missing")))
}
