package spool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// handlers are the callbacks of the latest Consume call; every worker
// reads them per entry, so a reload takes effect at once.
type handlers struct {
	deliver   Deliver
	onExpired func(Entry)
}

// worker fetches one app's entries.
type worker struct {
	app    string
	cons   jetstream.Consumer
	sem    chan struct{}      // one token per deliver call in flight
	jobs   chan jetstream.Msg // fetched entries, for the handlers (one per token)
	cancel context.CancelFunc
	pace   pacer // batches while deliveries succeed, probes while they keep failing
}

// startHandlers runs the entries batch fetches, each in one of cap(w.sem)
// goroutines that live as long as the fetch loop: a goroutine per entry
// would grow a fresh stack for every delivery. Each token of w.sem taken
// for a job is given back here.
func (s *Spool) startHandlers(ctx context.Context, w *worker) {
	for range cap(w.sem) {
		go func() {
			for m := range w.jobs {
				s.note(w, s.handle(ctx, w, m, 0))
				<-w.sem
				s.inflight.Done()
			}
		}()
	}
}

// Consume starts redelivering the entries of apps: one durable pull
// consumer per app, each with at most 64 deliver calls in flight, so one
// app's outage never holds up another. While an app's deliveries keep
// failing, its backlog stays unfetched and one entry at a time probes the
// provider (see pacer); the first other answer starts the drain.
//
// For each entry: past its deadline (Accepted + max_age), onExpired(e) is
// called and the entry removed without calling deliver; not yet due (its
// notBefore), it is handed back until it is; otherwise deliver is called.
// Done removes it; !Done hands it back for max(backoff(attempt),
// RetryAfter), or, when that would pass its deadline, expires it at once
// (onExpired, removed): it could never be delivered in time.
//
// Calling Consume again (config reload) replaces the callbacks at once and
// the set of consumers: apps no longer listed stop being fetched (their
// in-flight calls finish), their entries stay in the stream until its age
// limit. onExpired may be nil.
func (s *Spool) Consume(apps []string, deliver Deliver, onExpired func(Entry)) error {
	if deliver == nil {
		return errors.New("spool: consume: deliver is nil")
	}
	if onExpired == nil {
		onExpired = func(Entry) {}
	}
	want := map[string]bool{}
	for _, a := range apps {
		if a == "" {
			return errors.New("spool: consume: empty app name")
		}
		want[a] = true
	}

	s.consume.Lock()
	defer s.consume.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	have := make(map[string]bool, len(s.workers))
	for a := range s.workers {
		have[a] = true
	}
	s.mu.Unlock()

	// Consumers for the new apps first: on error nothing changes.
	created := map[string]jetstream.Consumer{}
	ctx, cancel := context.WithTimeout(s.fetchCtx, s.tune.opTimeout)
	defer cancel()
	for a := range want {
		if have[a] {
			continue
		}
		cons, err := s.consumer(ctx, a)
		if err != nil {
			if s.isClosed() {
				return ErrClosed
			}
			return fmt.Errorf("spool: consumer for app %q: %w", a, err)
		}
		created[a] = cons
	}

	s.handlers.Store(&handlers{deliver: deliver, onExpired: onExpired})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for a, w := range s.workers {
		if !want[a] {
			w.cancel()
			delete(s.workers, a)
		}
	}
	for a, cons := range created {
		ctx, cancel := context.WithCancel(s.fetchCtx)
		w := &worker{app: a, cons: cons, sem: make(chan struct{}, s.tune.maxInFlight),
			jobs: make(chan jetstream.Msg, s.tune.maxInFlight), cancel: cancel}
		s.workers[a] = w
		s.loops.Add(1)
		s.startHandlers(ctx, w)
		go s.run(ctx, w)
	}
	return nil
}

// consumer creates app's durable consumer, or adopts and updates it.
func (s *Spool) consumer(ctx context.Context, app string) (jetstream.Consumer, error) {
	return s.js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:       consumerName(app),
		Description:   "pushrelay spool: one app's redeliveries",
		FilterSubject: subject(app),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.tune.ackWait,
		MaxDeliver:    -1,
		MaxAckPending: maxPending, // handed back (not due, or in backoff) counts too: see pacer
	})
}

// repair recreates what an operator (or a JetStream that lost its state)
// may have deleted under a failing fetch loop: the stream, app's consumer.
func (s *Spool) repair(ctx context.Context, w *worker) {
	ctx, cancel := context.WithTimeout(ctx, s.tune.opTimeout)
	defer cancel()
	cons, err := s.consumer(ctx, w.app)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err = ensureStream(ctx, s.js, s.cfg, s.tune.dedupWindow); err == nil {
			s.log.Warn("spool: stream was gone; created it again", "stream", StreamName)
			cons, err = s.consumer(ctx, w.app)
		}
	}
	if err == nil {
		w.cons = cons // only this worker's loop uses w.cons
	}
}

// run is one app's fetch loop. While the app's deliveries succeed it pulls
// as many entries as it has free delivery slots and hands each to its own
// goroutine; while they keep failing it probes, one entry at a time (see
// pacer).
func (s *Spool) run(ctx context.Context, w *worker) {
	defer s.loops.Done()
	defer close(w.jobs) // the handlers finish what they have, then end
	s.sweep(ctx, w)
	swept := time.Now()
	failing := false
	for {
		if time.Since(swept) >= sweepEvery {
			s.sweep(ctx, w)
			swept = time.Now()
		}
		var err error
		if w.pace.failing() {
			err = s.probe(ctx, w)
		} else {
			err = s.batch(ctx, w)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			if !failing {
				s.log.Warn("spool: fetching failed", "app", w.app, "error", err.Error())
				failing = true
			}
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
			s.repair(ctx, w)
			s.sweep(ctx, w)
			swept = time.Now()
			continue
		}
		if failing {
			s.log.Info("spool: fetching again", "app", w.app)
			failing = false
		}
	}
}

// batch fetches as many entries as there are free delivery slots (one at
// least, waiting for it) and hands each to its own goroutine.
func (s *Spool) batch(ctx context.Context, w *worker) error {
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	n := 1
fill:
	for n < cap(w.sem) {
		select {
		case w.sem <- struct{}{}:
			n++
		default:
			break fill
		}
	}

	fctx, cancel := context.WithTimeout(ctx, s.tune.fetchWait)
	defer cancel()
	batch, err := w.cons.Fetch(n, jetstream.FetchContext(fctx))
	got := 0
	if err == nil {
		for m := range batch.Messages() {
			got++
			s.inflight.Add(1)
			w.jobs <- m // never blocks: one place per token held
		}
		err = batch.Error()
	}
	for range n - got {
		<-w.sem
	}
	return err
}

// probe is the fetch loop's step while the app keeps failing: it fetches
// one entry and tries it (holding it until it is due when that is within
// the probe interval); after a failure it pauses for the next probe
// interval. Entries it does not fetch wait in the stream at no cost.
func (s *Spool) probe(ctx context.Context, w *worker) error {
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, s.tune.fetchWait)
	batch, err := w.cons.Fetch(1, jetstream.FetchContext(fctx))
	var m jetstream.Msg
	if err == nil {
		for msg := range batch.Messages() {
			m = msg
		}
		err = batch.Error()
	}
	cancel()
	if m == nil {
		<-w.sem
		return err
	}
	s.inflight.Add(1)
	res := make(chan handled, 1)
	hold := w.pace.interval(s.backoff)
	go func() {
		defer s.inflight.Done()
		defer func() { <-w.sem }()
		res <- s.handle(ctx, w, m, hold)
	}()
	var h handled
	select {
	case h = <-res:
	case <-ctx.Done():
		return nil
	}
	s.note(w, h)
	var wait time.Duration
	switch h.fate {
	case fateRetry:
		wait = w.pace.nextProbe(s.backoff)
	case fateNotDue:
		wait = hold
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return nil
}

// fate is what became of a fetched entry.
type fate int

const (
	fateOther  fate = iota // expired, unreadable, or handed back on close
	fateNotDue             // handed back unattempted: not due yet
	fateDone               // deliver answered Done: removed
	fateRetry              // deliver answered "retry later": handed back for a backoff step
)

// handled is handle's report, for the app's pacer.
type handled struct {
	fate       fate
	retryAfter time.Duration // the verdict's RetryAfter, with fateRetry
}

// note tells the app's pacer how an attempt went, and logs when the app
// starts or stops failing.
func (s *Spool) note(w *worker, h handled) {
	switch h.fate {
	case fateDone:
		if w.pace.done() {
			s.log.Info("spool: redeliveries succeed again; draining", "app", w.app)
			s.giveBackAfterDrain()
		}
	case fateRetry:
		if w.pace.retry(h.retryAfter) {
			s.log.Warn("spool: redeliveries keep failing; probing one entry at a time", "app", w.app)
		}
	}
}

// handle decides one fetched entry's fate. An entry not due yet is handed
// back, unless it is due within hold: then it is kept until it is due and
// tried (a probe must not hand its entry back to fetch the next one).
func (s *Spool) handle(ctx context.Context, w *worker, m jetstream.Msg, hold time.Duration) handled {
	h := s.handlers.Load()

	// Every spooled entry is first fetched early, as soon as it is put:
	// hand it back unread when its headers show it is not due and can
	// still be delivered in time. (Entries put without an accepted time
	// are read first, as below.)
	if nb, ok := headerTime(m, hdrNotBefore); ok && time.Now().Before(nb) {
		if at, ok := headerTime(m, hdrAccepted); ok && nb.Before(at.Add(s.cfg.MaxAge)) {
			if time.Until(nb) > hold || !s.hold(ctx, m, nb) {
				if err := m.NakWithDelay(time.Until(nb)); err != nil {
					s.log.Warn("spool: handing back failed", "app", w.app, "error", err.Error())
				}
				return handled{fate: fateNotDue}
			}
		}
	}

	md, err := m.Metadata()
	if err != nil {
		s.log.Error("spool: entry without metadata", "app", w.app, "error", err.Error())
		return handled{} // it comes back after the ack wait
	}
	var e Entry
	if err := jsonv2.Unmarshal(m.Data(), &e); err != nil { // as Put's encoding/json wrote it, faster
		s.log.Error("spool: unreadable entry dropped", "app", w.app, "seq", md.Sequence.Stream, "error", err.Error())
		if err := m.TermWithReason("unreadable"); err != nil {
			s.log.Warn("spool: dropping unreadable entry failed", "app", w.app, "error", err.Error())
		}
		return handled{}
	}
	e.Notification.AppVersion = e.AppVersion
	token := wire.TokenHash(e.Notification.DeviceID)

	now := time.Now()
	deadline := e.Deadline(s.cfg.MaxAge)
	if !now.Before(deadline) {
		s.expire(w, m, e, h, token)
		return handled{}
	}
	nb, hasNB := headerTime(m, hdrNotBefore)
	if hasNB && now.Before(nb) {
		if !nb.Before(deadline) {
			s.expire(w, m, e, h, token)
			return handled{}
		}
		// Not due: back until it is. This delivery is not an attempt.
		if nb.Sub(now) > hold || !s.hold(ctx, m, nb) {
			if err := m.NakWithDelay(time.Until(nb)); err != nil {
				s.log.Warn("spool: handing back failed", "app", w.app, "token", token, "error", err.Error())
			}
			return handled{fate: fateNotDue}
		}
	}

	attempt := int(md.NumDelivered)
	if hasNB {
		attempt-- // its first delivery was (taken to be) the early hand-back
	}
	attempt = max(attempt, 1)
	v := s.deliver(m, e, attempt, h.deliver)
	if v.Done {
		if err := s.ack(m); err != nil {
			s.log.Warn("spool: removing a finished entry failed; it may be delivered again",
				"app", w.app, "attempt", attempt, "token", token, "error", err.Error())
		}
		return handled{fate: fateDone}
	}
	if s.dctx.Err() != nil {
		// Closing: hand it straight back, to another relay if there is one.
		_ = m.Nak()
		return handled{}
	}
	delay := max(s.backoff.Delay(attempt), v.RetryAfter)
	if !time.Now().Add(delay).Before(deadline) {
		s.expire(w, m, e, h, token)
		return handled{fate: fateRetry, retryAfter: v.RetryAfter}
	}
	if err := m.NakWithDelay(delay); err != nil {
		s.log.Warn("spool: scheduling a redelivery failed", "app", w.app, "attempt", attempt, "token", token, "error", err.Error())
		return handled{fate: fateRetry, retryAfter: v.RetryAfter}
	}
	s.log.Debug("spool: redelivery failed", "app", w.app, "attempt", attempt, "token", token, "next_in", delay)
	return handled{fate: fateRetry, retryAfter: v.RetryAfter}
}

// hold keeps a fetched entry until, telling JetStream every third of the
// ack wait that it is still being worked on. It returns false, the entry
// still held, when ctx ends first.
func (s *Spool) hold(ctx context.Context, m jetstream.Msg, until time.Time) bool {
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	tick := time.NewTicker(s.tune.ackWait / 3)
	defer tick.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-tick.C:
			_ = m.InProgress()
		case <-ctx.Done():
			return false
		}
	}
}

// deliver runs the callback, telling JetStream every third of the ack
// wait that the entry is still being worked on, so a slow attempt is never
// handed to another relay meanwhile. (The ticking starts only when the
// attempt is slow: most take milliseconds.)
func (s *Spool) deliver(m jetstream.Msg, e Entry, attempt int, deliver Deliver) Verdict {
	ctx, cancel := context.WithCancel(s.dctx)
	defer cancel()
	every := s.tune.ackWait / 3
	t := time.AfterFunc(every, func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			_ = m.InProgress()
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	})
	defer t.Stop()
	return deliver(ctx, e, attempt)
}

// expire removes an entry that can no longer be delivered in time and
// reports it. If the removal fails the entry comes back and is reported
// then, so it is counted once.
func (s *Spool) expire(w *worker, m jetstream.Msg, e Entry, h *handlers, token string) {
	if err := s.ack(m); err != nil {
		s.log.Warn("spool: removing an expired entry failed", "app", w.app, "token", token, "error", err.Error())
		return
	}
	s.log.Debug("spool: entry expired", "app", w.app, "token", token, "age", time.Since(e.Accepted).Round(time.Millisecond))
	h.onExpired(e)
}

// ack removes an entry and waits for JetStream to confirm it. The removal
// is synced within removalSyncDelay, not waited for: unsynced, it can
// only bring back an entry already finished.
func (s *Spool) ack(m jetstream.Msg) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.tune.opTimeout)
	defer cancel()
	if err := m.DoubleAck(ctx); err != nil {
		return err
	}
	s.health.acked(m) // a broken store did not write the removal: done again after its restart
	if s.syncer != nil {
		s.syncer.soon()
	}
	return nil
}

// headerTime reads a time Put recorded in header key, if any.
func headerTime(m jetstream.Msg, key string) (time.Time, bool) {
	v := m.Headers().Get(key)
	if v == "" {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}
