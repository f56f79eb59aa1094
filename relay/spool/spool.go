// Package spool is pushrelay's durable retry queue: notifications whose
// delivery failed for a reason worth retrying wait here and are redelivered
// with exponential backoff until they are delivered, found dead, or too old.
//
// It runs on NATS JetStream: by default a server embedded in the process
// (no network listener, file store under spool.dir), or, when
// spool.nats_url is set, an external JetStream (a cluster shared by several
// relays, which then split the work).
//
// Durability, embedded: Put returns once its entry is written and fsynced;
// Puts running at the same time share one fsync, so an outage that sends
// every push to the spool is not held to one fsync per push. A removal (an
// entry delivered, dead or expired) is fsynced within 10ms, unwaited: a
// power cut in between brings back an entry already finished, which is
// delivered again; it never loses one.
//
// Layout: one work-queue stream, PUSHRELAY_SPOOL, with one subject per app
// (pushrelay.spool.<hex of the app name>) and one durable pull consumer per
// app (pushrelay_<hex of the app name>), so one app's outage never holds up
// another's redeliveries. Relays that share an external JetStream use the
// same consumer names and so never deliver one entry twice at once.
//
// Attempts: the attempt number given to Deliver is the consumer's delivery
// count, minus one for an entry put with a notBefore (its first delivery is
// taken to be the early one that is handed back unattempted), and never
// less than 1. It is exact in the common case; when a relay restarts, or
// when a spooled entry is first seen after it is already due, an attempt
// number may repeat, which only makes one backoff step shorter.
//
// Failures: while spool.dir runs short of space (a reserve of 1/8 of the
// file system is kept for the drain), or JetStream cannot be reached or has
// lost its quorum, Put and Check fail at once with ErrDiskFull or
// ErrUnavailable instead of waiting on JetStream; a watch finds out when it
// is over, restarting an embedded store that met a full disk anyway and
// removing again the entries delivered while it could not write (health.go).
//
// What it stores is the policy's output: nothing unstripped reaches the
// disk. What it logs is the app, the attempt and the device token only as
// wire.TokenHash, never content.
//
// It stores and never sends: it imports relay/wire only, never a provider;
// relay hands it the function that delivers.
package spool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// Names in JetStream. Relays sharing an external JetStream must agree on them.
const (
	// StreamName is the JetStream stream that holds the spool.
	StreamName = "PUSHRELAY_SPOOL"
	// SubjectPrefix starts every spool subject; the app name follows, hex encoded.
	SubjectPrefix = "pushrelay.spool."
	// ConsumerPrefix starts every durable consumer name; the app name follows, hex encoded.
	ConsumerPrefix = "pushrelay_"

	// hdrNotBefore carries the time (Unix nanoseconds) before which an entry
	// must not be delivered.
	hdrNotBefore = "Pushrelay-Not-Before"
	// hdrAccepted carries Entry.Accepted (Unix nanoseconds), so that an
	// entry not due yet can be handed back without reading it.
	hdrAccepted = "Pushrelay-Accepted"
)

// ErrFull is returned (wrapped) by Put when max_messages/max_bytes is
// reached; the error text says which bound and the key (spool.max_messages
// / spool.max_bytes). Test with errors.Is.
var ErrFull = errors.New("spool is full")

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("spool is closed")

// Entry is one notification waiting for redelivery. Notification is the policy's OUTPUT (never unstripped content).
type Entry struct {
	App          string            `json:"app"` // the configured platform name it is routed to (may be "*")
	Notification wire.Notification `json:"n"`
	AppVersion   int               `json:"v"`  // wire.Notification.AppVersion is json:"-", so it travels here
	Accepted     time.Time         `json:"at"` // when the relay first accepted it; deadline = Accepted + MaxAge
}

// Deadline is the time after which e is dropped instead of delivered.
func (e Entry) Deadline(maxAge time.Duration) time.Time { return e.Accepted.Add(maxAge) }

// Verdict is the deliver callback's answer.
type Verdict struct {
	Done       bool          // delivered, token dead or failed for good: remove it
	RetryAfter time.Duration // when !Done: wait at least this long
}

// Deliver tries one entry; attempt is 1 for the first redelivery. It must
// honour ctx, which is cancelled when Close runs out of time. The entry it
// gets has Notification.AppVersion set from AppVersion.
type Deliver func(ctx context.Context, e Entry, attempt int) Verdict

// tuning holds the timings tests shorten.
type tuning struct {
	ackWait     time.Duration // an entry handed out and neither acked nor nakked comes back after this
	fetchWait   time.Duration // lifetime of one pull request
	maxInFlight int           // concurrent deliver calls per app
	closeGrace  time.Duration // after Close's ctx ends, how long cancelled deliver calls get to return
	opTimeout   time.Duration // stream and consumer set-up, acks
	dedupWindow time.Duration // the stream's duplicate window (bounded by max_age)
}

// defaultTuning: an entry a relay had fetched when it died comes back
// ackWait later; a live relay's attempts, however slow, tell JetStream
// every third of it that they are still at work (deliver, hold).
var defaultTuning = tuning{
	ackWait:     10 * time.Second,
	fetchWait:   5 * time.Second,
	maxInFlight: 64,
	closeGrace:  time.Second,
	opTimeout:   10 * time.Second,
	dedupWindow: dedupWindow,
}

// Spool is the durable retry queue. It is safe for concurrent use.
type Spool struct {
	cfg     Config
	backoff Backoff
	log     *slog.Logger
	tune    tuning

	ns     *server.Server // the embedded server; nil with an external JetStream
	syncer *syncer        // makes the embedded server's writes durable; nil with an external JetStream
	unlock func()         // releases spool.dir; nil with an external JetStream
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream

	stopFetch context.CancelFunc // stops every fetch loop (Close)
	fetchCtx  context.Context
	dctx      context.Context // given to deliver; cancelled when Close runs out of time
	stopDel   context.CancelFunc

	health *health // the problems that make Put and Check fail at once (health.go)

	handlers atomic.Pointer[handlers]
	consume  sync.Mutex // serializes Consume calls

	mu       sync.Mutex
	closed   bool
	workers  map[string]*worker
	loops    sync.WaitGroup // fetch loops; Add only under mu while !closed
	inflight sync.WaitGroup // handle calls; Add only from a fetch loop

	closeOnce sync.Once
	closeErr  error
}

// Open opens the spool: it starts the embedded JetStream on cfg.Dir (or
// connects to cfg.NATSURL), and creates the stream or adopts the existing
// one, updating its bounds to cfg. Entries left by an earlier run (even one
// that crashed) are kept and delivered once Consume is called. Zero fields
// of cfg and backoff get their defaults. Errors name the key at fault:
// "spool.dir: mkdir ...: permission denied", "spool.nats_url: ...".
func Open(cfg Config, backoff Backoff, log *slog.Logger) (*Spool, error) {
	return open(cfg, backoff, log, defaultTuning)
}

func open(cfg Config, backoff Backoff, log *slog.Logger, t tuning) (*Spool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg, backoff = cfg.WithDefaults(), backoff.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Spool{cfg: cfg, backoff: backoff, log: log, tune: t, workers: map[string]*worker{}}
	if cfg.NATSURL == "" {
		s.health = newHealth(log, cfg.Dir)
	} else {
		s.health = newHealth(log, "")
	}
	key := "spool.dir"
	if cfg.NATSURL != "" {
		key = "spool.nats_url"
		nc, err := nats.Connect(cfg.NATSURL,
			nats.Name("pushrelay"),
			nats.MaxReconnects(-1),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					log.Warn("spool: disconnected from NATS", "error", err.Error())
				}
			}),
			nats.ReconnectHandler(func(*nats.Conn) { log.Info("spool: reconnected to NATS") }),
		)
		if err != nil {
			var uerr *url.Error // its text would quote the URL, password and all
			if errors.As(err, &uerr) {
				err = fmt.Errorf("invalid URL: %w", uerr.Err)
			}
			return nil, fmt.Errorf("spool.nats_url: %w", err)
		}
		s.nc = nc
	} else {
		ns, unlock, err := startEmbedded(cfg, log, s.health.writeFailed)
		if err != nil {
			return nil, err
		}
		s.ns, s.unlock = ns, unlock
		nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("pushrelay-spool"))
		if err != nil {
			s.shutdown()
			return nil, fmt.Errorf("spool.dir: connecting to the embedded JetStream: %w", err)
		}
		s.nc = nc
	}
	js, err := jetstream.New(s.nc)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), t.opTimeout)
		s.stream, err = ensureStream(ctx, js, cfg, t.dedupWindow)
		if err == nil && s.ns != nil {
			s.syncer, err = startSyncer(ctx, cfg.Dir)
		}
		cancel()
	}
	if err != nil {
		s.shutdown()
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	s.js = js
	s.fetchCtx, s.stopFetch = context.WithCancel(context.Background())
	s.dctx, s.stopDel = context.WithCancel(context.Background())
	s.health.nc, s.health.js, s.health.stream, s.health.key = s.nc, js, s.stream, s.connKey()
	if s.ns != nil {
		ns, dir := s.ns, cfg.Dir
		s.health.restart = func() error { return restartJetStream(ns, dir) }
		s.health.storeErr = func() string { return storeWriteError(ns) }
	}
	s.health.start()
	return s, nil
}

// ensureStream creates the stream, or adopts the existing one and brings
// the settings the spool owns up to date. Other settings an operator may
// have chosen (replicas, placement) are kept.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg Config, dedup time.Duration) (jetstream.Stream, error) {
	want := jetstream.StreamConfig{
		Name:        StreamName,
		Description: "pushrelay retry spool",
		Subjects:    []string{SubjectPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		MaxAge:      cfg.streamMaxAge(),
		Duplicates:  cfg.duplicates(dedup),
		MaxMsgs:     cfg.MaxMessages,
		MaxBytes:    cfg.MaxBytes,
	}
	for range 3 {
		st, err := js.Stream(ctx, StreamName)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue // another relay created it meanwhile: adopt it
			}
			if err != nil {
				return nil, fmt.Errorf("creating stream %s: %w", StreamName, err)
			}
			return st, nil
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", StreamName, err)
		}
		cur := st.CachedInfo().Config
		if cur.Retention != jetstream.WorkQueuePolicy {
			return nil, fmt.Errorf("stream %s exists with retention %s; the spool needs workqueue: delete the stream", StreamName, cur.Retention)
		}
		upd := cur
		upd.Subjects, upd.Discard = want.Subjects, want.Discard
		upd.MaxAge, upd.Duplicates = want.MaxAge, want.Duplicates
		upd.MaxMsgs, upd.MaxBytes = want.MaxMsgs, want.MaxBytes
		if slices.Equal(cur.Subjects, upd.Subjects) && cur.Discard == upd.Discard && cur.MaxAge == upd.MaxAge &&
			cur.Duplicates == upd.Duplicates && cur.MaxMsgs == upd.MaxMsgs && cur.MaxBytes == upd.MaxBytes {
			return st, nil
		}
		st, err = js.UpdateStream(ctx, upd)
		if err != nil {
			return nil, fmt.Errorf("updating stream %s: %w", StreamName, err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("stream %s: created and gone again", StreamName)
}

// subject is where app's entries are stored. Hex keeps any app name ("*"
// included) a single valid subject token.
func subject(app string) string { return SubjectPrefix + hex.EncodeToString([]byte(app)) }

// consumerName is app's durable consumer: the same on every relay.
func consumerName(app string) string {
	h := hex.EncodeToString([]byte(app))
	if len(h) > 200 { // consumer names are limited in length; subjects are not
		sum := sha256.Sum256([]byte(app))
		h = "h" + hex.EncodeToString(sum[:])
	}
	return ConsumerPrefix + h
}

// msgID is the deduplication key of a notification: its (ack_id,
// device_id), hashed so that no token ends up in a header.
func msgID(n wire.Notification) string {
	sum := sha256.Sum256([]byte(n.AckID + "\x00" + n.DeviceID))
	return "pr1-" + hex.EncodeToString(sum[:16])
}

// Put stores e for redelivery and returns only once it is durable
// (embedded: written and fsynced, in one fsync with the Puts running at
// the same time; external: acknowledged by JetStream). It is not
// delivered before now+notBefore (Retry-After or the first backoff step).
//
// A second Put of the same (ack_id, device_id) within a second (the
// stream's duplicate window: it guards a retried Put; JetStream keeps each
// id of it in memory) is accepted and not stored twice; with an empty
// ack_id there is no deduplication.
// A zero Accepted is set to now, a zero AppVersion taken from
// e.Notification.AppVersion. When the spool is full the error wraps
// ErrFull. When the fsync fails, Put says so, though the entry, written
// but perhaps not durable, may still be delivered.
func (s *Spool) Put(ctx context.Context, e Entry, notBefore time.Duration) error {
	if s.isClosed() {
		return ErrClosed
	}
	if e.App == "" {
		return errors.New("spool: put: entry has no app")
	}
	now := time.Now()
	if e.Accepted.IsZero() {
		e.Accepted = now
	}
	if e.AppVersion == 0 {
		e.AppVersion = e.Notification.AppVersion
	}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("spool: put: %w", err)
	}
	msg := nats.NewMsg(subject(e.App))
	msg.Data = data
	if notBefore > 0 {
		msg.Header.Set(hdrNotBefore, strconv.FormatInt(now.Add(notBefore).UnixNano(), 10))
		msg.Header.Set(hdrAccepted, strconv.FormatInt(e.Accepted.UnixNano(), 10))
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(StreamName)}
	if e.Notification.AckID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID(e.Notification)))
	}
	if err := s.health.admit(len(data)); err != nil {
		return err
	}
	ack, err := s.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		return s.putError(err)
	}
	if s.syncer != nil { // a duplicate too: the first copy may not be synced yet
		if err := s.syncer.wait(ctx); err != nil {
			if s.isClosed() {
				return ErrClosed
			}
			return s.health.syncFailed(err)
		}
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "spool: put", slog.String("app", e.App),
			slog.String("token", wire.TokenHash(e.Notification.DeviceID)),
			slog.Duration("not_before", notBefore), slog.Bool("duplicate", ack.Duplicate))
	}
	return nil
}

// putError maps JetStream's refusals onto ErrFull and the key to raise,
// and its silence or absence onto ErrUnavailable, which the following
// Puts then return at once until JetStream answers again (health.go).
func (s *Spool) putError(err error) error {
	if s.isClosed() {
		return ErrClosed
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch {
		case strings.Contains(apiErr.Description, "maximum messages"):
			return fmt.Errorf("%w: spool.max_messages (%d) reached", ErrFull, s.cfg.MaxMessages)
		case strings.Contains(apiErr.Description, "maximum bytes"):
			return fmt.Errorf("%w: spool.max_bytes (%d) reached", ErrFull, s.cfg.MaxBytes)
		case apiErr.ErrorCode == 10047, apiErr.ErrorCode == 10023: // storage / resources exhausted
			return fmt.Errorf("%w: JetStream has no storage left (%s)", ErrFull, apiErr.Description)
		}
	}
	if unreachable(err) {
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.New("no answer in time (connection down, or no quorum)")
		}
		return s.health.unavailable(s.connKey(), fmt.Errorf("JetStream did not take the entry: %w", err))
	}
	return fmt.Errorf("spool: put: %w", err)
}

// unreachable tells whether err means JetStream could not be reached or
// did not answer in time: no connection, no responders, no quorum.
func unreachable(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrConnectionClosed):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503
	}
	return false
}

// Stats reports how many entries wait and the age of the oldest (zero when
// none), for pushrelay_spool_messages and pushrelay_spool_oldest_age_seconds.
// The age counts from the entry's Put.
func (s *Spool) Stats(ctx context.Context) (messages int64, oldest time.Duration, err error) {
	if s.isClosed() {
		return 0, 0, ErrClosed
	}
	if p := s.health.cur.Load(); p != nil && p.reason == ReasonUnavailable {
		return 0, 0, p.err // without waiting on a JetStream known not to answer
	}
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("spool: stats: %w", err)
	}
	messages = int64(info.State.Msgs)
	if messages > 0 && !info.State.FirstTime.IsZero() {
		oldest = max(time.Since(info.State.FirstTime), 0)
	}
	return messages, oldest, nil
}

// Check tells whether the spool can be written now (for /readyz): spool.dir
// has room (else the error wraps ErrDiskFull), the connection is up and the
// stream answers within a second (else ErrUnavailable), and it is not full
// (the error then wraps ErrFull and names the bound; max_bytes counts as
// reached when one more entry of the average size would not fit). A full
// spool is worth a warning, not necessarily unreadiness: direct deliveries
// still work. A full disk or an unavailable JetStream is: the spool cannot
// keep what fails.
func (s *Spool) Check(ctx context.Context) error {
	if s.isClosed() {
		return ErrClosed
	}
	if err := s.health.check(); err != nil {
		return err
	}
	if st := s.nc.Status(); st != nats.CONNECTED {
		return s.health.unavailable(s.connKey(), fmt.Errorf("not connected to JetStream (%s)", st))
	}
	ictx, cancel := context.WithTimeout(ctx, probeTimeout)
	info, err := s.stream.Info(ictx)
	cancel()
	if err == nil {
		if err := writable(info); err != nil {
			return s.health.unavailable(s.connKey(), fmt.Errorf("stream %s: %w", StreamName, err))
		}
	}
	if err != nil {
		if ctx.Err() == nil && unreachable(err) {
			return s.health.unavailable(s.connKey(), fmt.Errorf("stream %s: %w", StreamName, err))
		}
		return fmt.Errorf("spool: %w", err)
	}
	if c := info.Config; c.MaxMsgs > 0 && int64(info.State.Msgs) >= c.MaxMsgs {
		return fmt.Errorf("%w: spool.max_messages (%d) reached", ErrFull, c.MaxMsgs)
	}
	// Bytes: full when one more entry of the average size would not fit.
	var avg uint64
	if info.State.Msgs > 0 {
		avg = info.State.Bytes / info.State.Msgs
	}
	if c := info.Config; c.MaxBytes > 0 && int64(info.State.Bytes+avg) > c.MaxBytes {
		return fmt.Errorf("%w: spool.max_bytes (%d) reached", ErrFull, c.MaxBytes)
	}
	return nil
}

func (s *Spool) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops fetching, waits (until ctx ends) for in-flight deliver calls,
// then cancels the ones left and gives them a moment to hand their entries
// back, flushes, and shuts the embedded server down. Entries not finished
// stay in the spool. It is idempotent; later calls return the first
// result.
func (s *Spool) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.close(ctx) })
	return s.closeErr
}

func (s *Spool) close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.workers = nil
	s.mu.Unlock()
	s.stopFetch()
	s.loops.Wait() // quick: their pulls are cancelled

	idle := make(chan struct{})
	go func() { s.inflight.Wait(); close(idle) }()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		s.stopDel()
		select {
		case <-idle:
		case <-time.After(s.tune.closeGrace):
			err = fmt.Errorf("spool: close: deliver calls still running: %w", ctx.Err())
		}
	}
	s.stopDel()
	if ferr := s.nc.FlushTimeout(s.tune.opTimeout); ferr != nil {
		// Acks that did not get through only mean those entries come back.
		s.log.Warn("spool: close: flush failed", "error", ferr.Error())
	}
	s.shutdown()
	return err
}

// shutdown closes the connection and the embedded server, syncs what the
// server wrote last and releases the directory.
func (s *Spool) shutdown() {
	s.health.close()
	if s.nc != nil {
		s.nc.Close()
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
	if s.syncer != nil {
		if err := s.syncer.close(); err != nil {
			s.log.Warn("spool: close: syncing the store failed; finished entries may be delivered again", "error", err.Error())
		}
	}
	if s.unlock != nil {
		s.unlock()
	}
}
