package relay

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/pushrelay/pushrelay/providers/upstream"
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
			if ae, ok := errors.AsType[*upstream.AckError](err); ok {
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
// It is compact, as it holds the last max deliveries: an ack_id is kept
// as its 64-bit hash (a collision, at odds of about 1e-10 when full, only
// mistimes one ack), the ring holds the entries and the map only their
// places in it. About 40 bytes an entry, and no allocation per push.
type sentLog struct {
	mu   sync.Mutex
	max  int
	ttl  time.Duration
	seed maphash.Seed
	apps []string          // app names, indexed by sentSlot.app
	at   map[uint64]uint32 // ack_id hash -> index of its slot in ring
	// ring holds the entries in the order they were remembered: n of
	// them, from head on, wrapping around. It grows up to max.
	ring []sentSlot
	head int
	n    int
}

type sentSlot struct {
	id   uint64 // hash of the ack_id
	when int64  // Unix nanoseconds
	app  uint16 // index in apps
}

// sweepPerRemember bounds how many expired entries one remember forgets:
// enough to keep up (each remember adds one), few enough to stay O(1).
const sweepPerRemember = 4

func newSentLog(max int, ttl time.Duration) *sentLog {
	return &sentLog{max: max, ttl: ttl, seed: maphash.MakeSeed(), at: make(map[uint64]uint32)}
}

// remember notes that the notification with ack_id id was delivered by app
// at at.
func (l *sentLog) remember(id, app string, at time.Time) {
	if l == nil || id == "" || l.max <= 0 {
		return
	}
	key, when := maphash.String(l.seed, id), at.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := 0; i < sweepPerRemember && l.n > 0 && time.Duration(when-l.ring[l.head].when) > l.ttl; i++ {
		l.pop()
	}
	if l.n == l.max {
		l.pop()
	}
	l.push(sentSlot{id: key, when: when, app: l.appIndex(app)})
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
	i, ok := l.at[key]
	var s sentSlot
	if ok {
		s = l.ring[i]
		delete(l.at, key)
		app = l.apps[s.app]
	}
	l.mu.Unlock()
	at = time.Unix(0, s.when)
	if !ok || now.Sub(at) > l.ttl {
		return "", time.Time{}, false
	}
	return app, at, true
}

// size reports how many ack_ids are remembered.
func (l *sentLog) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.at)
}

// push appends s at the new end of the ring, growing it (up to max) when
// full, and points s.id at it. The caller has made room when n == max.
func (l *sentLog) push(s sentSlot) {
	if l.n == len(l.ring) {
		grown := make([]sentSlot, min(max(2*len(l.ring), 1024), l.max))
		for i := 0; i < l.n; i++ {
			old := (l.head + i) % len(l.ring)
			grown[i] = l.ring[old]
			if j, ok := l.at[grown[i].id]; ok && int(j) == old {
				l.at[grown[i].id] = uint32(i)
			}
		}
		l.ring, l.head = grown, 0
	}
	i := (l.head + l.n) % len(l.ring)
	l.ring[i] = s
	l.at[s.id] = uint32(i)
	l.n++
}

// pop forgets the oldest slot, and its id unless it was remembered again
// since (it then points at a newer slot).
func (l *sentLog) pop() {
	s := l.ring[l.head]
	if j, ok := l.at[s.id]; ok && int(j) == l.head {
		delete(l.at, s.id)
	}
	l.ring[l.head] = sentSlot{}
	l.head = (l.head + 1) % len(l.ring)
	l.n--
}
