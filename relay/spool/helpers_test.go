package spool

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// testTuning keeps the tests fast: a short ack wait, so that entries a
// stopped relay held come back in a second.
var testTuning = tuning{
	ackWait:     time.Second,
	fetchWait:   time.Second,
	maxInFlight: 64,
	closeGrace:  200 * time.Millisecond,
	opTimeout:   5 * time.Second,
	dedupWindow: dedupWindow,
}

func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("SPOOL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	_ = t
	return slog.New(slog.DiscardHandler)
}

// testConfig is an embedded spool in a fresh directory.
func testConfig(t testing.TB) Config {
	return Config{Dir: t.TempDir(), MaxAge: time.Minute}
}

var fastBackoff = Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}

// openT opens a spool that is closed when the test ends.
func openT(t testing.TB, cfg Config, b Backoff) *Spool {
	t.Helper()
	s, err := open(cfg, b, testLog(t), testTuning)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// entry is a notification for app to device dev with ack id ack.
func entry(app, ack, dev string) Entry {
	return Entry{
		App: app,
		Notification: wire.Notification{
			AckID: ack, Platform: app, ServerID: "srv", DeviceID: dev, PostID: "post",
			Type: wire.TypeMessage, Signature: wire.NoSignature, AppVersion: 2,
		},
		Accepted: time.Now(),
	}
}

func put(t testing.TB, s *Spool, e Entry, notBefore time.Duration) {
	t.Helper()
	if err := s.Put(context.Background(), e, notBefore); err != nil {
		t.Fatalf("put: %v", err)
	}
}

// call is one deliver call as the recorder saw it.
type call struct {
	key     string // app/device
	attempt int
	at      time.Time
	entry   Entry
}

// recorder records deliver and onExpired calls; answer decides each
// verdict (nil: Done).
type recorder struct {
	mu      sync.Mutex
	calls   []call
	expired []Entry
	answer  func(ctx context.Context, e Entry, attempt int) Verdict
	notify  chan struct{}
}

func newRecorder(answer func(ctx context.Context, e Entry, attempt int) Verdict) *recorder {
	return &recorder{answer: answer, notify: make(chan struct{}, 1)}
}

func key(e Entry) string { return e.App + "/" + e.Notification.DeviceID }

func (r *recorder) deliver(ctx context.Context, e Entry, attempt int) Verdict {
	r.mu.Lock()
	r.calls = append(r.calls, call{key: key(e), attempt: attempt, at: time.Now(), entry: e})
	r.mu.Unlock()
	r.poke()
	if r.answer == nil {
		return Verdict{Done: true}
	}
	return r.answer(ctx, e, attempt)
}

func (r *recorder) onExpired(e Entry) {
	r.mu.Lock()
	r.expired = append(r.expired, e)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() ([]call, []Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...), append([]Entry(nil), r.expired...)
}

// byKey groups calls by entry.
func (r *recorder) byKey() map[string][]call {
	calls, _ := r.snapshot()
	m := map[string][]call{}
	for _, c := range calls {
		m[c.key] = append(m[c.key], c)
	}
	return m
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitEmpty waits until the spool holds nothing.
func waitEmpty(t testing.TB, s *Spool, d time.Duration) {
	t.Helper()
	var n int64
	waitFor(t, d, "an empty spool", func() bool {
		var err error
		n, _, err = s.Stats(context.Background())
		return err == nil && n == 0
	})
}

func devs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("dev-%03d", i)
	}
	return out
}

// abort stops s the way a crash would, as far as one process can: the
// connection goes first, so nothing in flight is acked or handed back,
// then the embedded server.
func (s *Spool) abort() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.workers = nil
		s.mu.Unlock()
		s.stopFetch()
		s.nc.Close()
		s.stopDel()
		s.loops.Wait()
		s.shutdown()
		s.closeErr = ErrClosed
	})
}
