package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestPutThenConsumeDelivers(t *testing.T) {
	s := openT(t, testConfig(t), fastBackoff)
	want := []Entry{entry("apple_rn", "a1", "d1"), entry("android_rn", "a2", "d2"), entry("*", "", "d3")}
	for _, e := range want {
		put(t, s, e, 0)
	}
	if n, _, err := s.Stats(context.Background()); err != nil || n != 3 {
		t.Fatalf("Stats before Consume = %d, %v; want 3", n, err)
	}
	r := newRecorder(nil)
	if err := s.Consume([]string{"apple_rn", "android_rn", "*"}, r.deliver, r.onExpired); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "3 deliveries", func() bool { return len(r.byKey()) == 3 })
	waitEmpty(t, s, 5*time.Second) // Done removes
	got := r.byKey()
	for _, e := range want {
		calls := got[key(e)]
		if len(calls) != 1 {
			t.Fatalf("%s delivered %d times, want 1", key(e), len(calls))
		}
		c := calls[0]
		if c.attempt != 1 {
			t.Errorf("%s attempt = %d, want 1", key(e), c.attempt)
		}
		g := c.entry
		if g.App != e.App || g.Notification.AckID != e.Notification.AckID || g.Notification.DeviceID != e.Notification.DeviceID ||
			g.AppVersion != 2 || g.Notification.AppVersion != 2 || !g.Accepted.Equal(e.Accepted) {
			t.Errorf("%s came back as %+v, want %+v", key(e), g, e)
		}
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		backoff  Backoff
		verdicts []Verdict // answers per attempt; after them: Done
		minGaps  []time.Duration
		maxGaps  []time.Duration
	}{
		{
			name:     "growing backoff",
			backoff:  Backoff{Initial: 40 * time.Millisecond, Max: time.Second},
			verdicts: []Verdict{{}, {}, {}},
			// 40ms, 80ms, 160ms, each -20%
			minGaps: []time.Duration{32 * time.Millisecond, 64 * time.Millisecond, 128 * time.Millisecond},
		},
		{
			name:     "capped at max",
			backoff:  Backoff{Initial: 20 * time.Millisecond, Max: 40 * time.Millisecond},
			verdicts: []Verdict{{}, {}, {}, {}},
			minGaps:  []time.Duration{16 * time.Millisecond, 32 * time.Millisecond, 32 * time.Millisecond, 32 * time.Millisecond},
			maxGaps:  []time.Duration{time.Second, time.Second, time.Second, time.Second},
		},
		{
			name:     "retry-after wins when longer",
			backoff:  fastBackoff,
			verdicts: []Verdict{{RetryAfter: 300 * time.Millisecond}, {}},
			minGaps:  []time.Duration{300 * time.Millisecond, 8 * time.Millisecond},
		},
		{
			name:     "backoff wins when retry-after is shorter",
			backoff:  Backoff{Initial: 200 * time.Millisecond, Max: time.Second},
			verdicts: []Verdict{{RetryAfter: time.Millisecond}},
			minGaps:  []time.Duration{160 * time.Millisecond},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openT(t, testConfig(t), tc.backoff)
			r := newRecorder(func(_ context.Context, _ Entry, attempt int) Verdict {
				if attempt <= len(tc.verdicts) {
					return tc.verdicts[attempt-1]
				}
				return Verdict{Done: true}
			})
			put(t, s, entry("app", "a", "d"), 0)
			if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
				t.Fatal(err)
			}
			want := len(tc.verdicts) + 1
			waitFor(t, 5*time.Second, "all attempts", func() bool { calls, _ := r.snapshot(); return len(calls) == want })
			waitEmpty(t, s, 5*time.Second)
			calls, expired := r.snapshot()
			if len(calls) != want || len(expired) != 0 {
				t.Fatalf("%d calls, %d expired; want %d, 0", len(calls), len(expired), want)
			}
			for i, c := range calls {
				if c.attempt != i+1 {
					t.Errorf("call %d has attempt %d", i, c.attempt)
				}
				if i == 0 {
					continue
				}
				gap := c.at.Sub(calls[i-1].at)
				if gap < tc.minGaps[i-1] {
					t.Errorf("gap before attempt %d = %s, want >= %s", c.attempt, gap, tc.minGaps[i-1])
				}
				if tc.maxGaps != nil && gap > tc.maxGaps[i-1] {
					t.Errorf("gap before attempt %d = %s, want <= %s", c.attempt, gap, tc.maxGaps[i-1])
				}
			}
		})
	}
}

func TestNotBefore(t *testing.T) {
	tests := []struct {
		name      string
		notBefore time.Duration
		consumeAt time.Duration // Consume starts this long after Put
	}{
		{"consumer running, entry not due", 300 * time.Millisecond, 0},
		{"consumer starts after it is due", 100 * time.Millisecond, 300 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openT(t, testConfig(t), fastBackoff)
			r := newRecorder(nil)
			start := time.Now()
			put(t, s, entry("app", "a", "d"), tc.notBefore)
			time.Sleep(tc.consumeAt)
			if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the delivery", func() bool { calls, _ := r.snapshot(); return len(calls) == 1 })
			calls, _ := r.snapshot()
			if got := calls[0].at.Sub(start); got < tc.notBefore {
				t.Errorf("delivered %s after Put, want >= %s", got, tc.notBefore)
			}
			if calls[0].attempt != 1 {
				t.Errorf("attempt = %d, want 1", calls[0].attempt)
			}
			waitEmpty(t, s, 5*time.Second)
		})
	}
}

// TestNotDueUnread checks that an entry not due yet goes back without being
// read: an unreadable one is dropped only once it is due.
func TestNotDueUnread(t *testing.T) {
	s := openT(t, testConfig(t), fastBackoff)
	const due = 400 * time.Millisecond
	now := time.Now()
	msg := nats.NewMsg(subject("app"))
	msg.Data = []byte("not an entry")
	msg.Header.Set(hdrNotBefore, strconv.FormatInt(now.Add(due).UnixNano(), 10))
	msg.Header.Set(hdrAccepted, strconv.FormatInt(now.UnixNano(), 10))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	r := newRecorder(nil)
	if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
		t.Fatal(err)
	}
	time.Sleep(due / 2)
	if n, _, err := s.Stats(ctx); err != nil || n != 1 {
		t.Fatalf("before it is due: %d entries (%v), want the unreadable one still there", n, err)
	}
	waitEmpty(t, s, 5*time.Second)
	if waited := time.Since(now); waited < due {
		t.Errorf("dropped %s after it was put, before it was due (%s)", waited, due)
	}
	if calls, expired := r.snapshot(); len(calls)+len(expired) > 0 {
		t.Errorf("deliver called %d times, onExpired %d: want neither for an unreadable entry", len(calls), len(expired))
	}
}

func TestDedup(t *testing.T) {
	tests := []struct {
		name  string
		puts  []Entry
		wantN int // deliveries
	}{
		{"same ack_id and device_id", []Entry{entry("app", "ack1", "d1"), entry("app", "ack1", "d1")}, 1},
		{"same ack_id, other device", []Entry{entry("app", "ack1", "d1"), entry("app", "ack1", "d2")}, 2},
		{"empty ack_id: no dedup", []Entry{entry("app", "", "d1"), entry("app", "", "d1")}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openT(t, testConfig(t), fastBackoff)
			for _, e := range tc.puts {
				put(t, s, e, 0)
			}
			if n, _, _ := s.Stats(context.Background()); n != int64(tc.wantN) {
				t.Errorf("stored %d, want %d", n, tc.wantN)
			}
			r := newRecorder(nil)
			if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
				t.Fatal(err)
			}
			waitEmpty(t, s, 5*time.Second)
			time.Sleep(50 * time.Millisecond)
			if calls, _ := r.snapshot(); len(calls) != tc.wantN {
				t.Errorf("%d deliveries, want %d", len(calls), tc.wantN)
			}
		})
	}
	t.Run("after delivery, within max_age", func(t *testing.T) {
		t.Parallel()
		s := openT(t, testConfig(t), fastBackoff)
		r := newRecorder(nil)
		if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
			t.Fatal(err)
		}
		put(t, s, entry("app", "ack1", "d1"), 0)
		waitEmpty(t, s, 5*time.Second)
		waitFor(t, time.Second, "the delivery", func() bool { calls, _ := r.snapshot(); return len(calls) == 1 })
		put(t, s, entry("app", "ack1", "d1"), 0)
		time.Sleep(200 * time.Millisecond)
		if calls, _ := r.snapshot(); len(calls) != 1 {
			t.Errorf("%d deliveries, want 1", len(calls))
		}
	})
}

func TestExpiry(t *testing.T) {
	const maxAge = 300 * time.Millisecond
	tests := []struct {
		name      string
		accepted  time.Duration // before Put
		notBefore time.Duration
		answer    func(context.Context, Entry, int) Verdict
		wantCalls bool
	}{
		{name: "already too old", accepted: 2 * maxAge},
		{name: "due only after its deadline", notBefore: 2 * maxAge},
		{name: "too old, and not due yet", accepted: 2 * maxAge, notBefore: maxAge / 3},
		{name: "retry-after past the deadline", answer: func(context.Context, Entry, int) Verdict {
			return Verdict{RetryAfter: time.Hour}
		}, wantCalls: true},
		{name: "failing until too old", answer: func(context.Context, Entry, int) Verdict {
			return Verdict{}
		}, wantCalls: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			cfg.MaxAge = maxAge
			s := openT(t, cfg, Backoff{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond})
			r := newRecorder(tc.answer)
			e := entry("app", "a", "d")
			e.Accepted = time.Now().Add(-tc.accepted)
			put(t, s, e, tc.notBefore)
			if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the expiry", func() bool { _, exp := r.snapshot(); return len(exp) > 0 })
			waitEmpty(t, s, 5*time.Second)
			time.Sleep(100 * time.Millisecond)
			calls, expired := r.snapshot()
			if len(expired) != 1 || key(expired[0]) != key(e) {
				t.Errorf("expired %v, want just %s", expired, key(e))
			}
			if !tc.wantCalls && len(calls) > 0 {
				t.Errorf("delivered %d times, want never", len(calls))
			}
			deadline := e.Deadline(maxAge)
			for _, c := range calls {
				if !c.at.Before(deadline) {
					t.Errorf("delivered %s after its deadline", c.at.Sub(deadline))
				}
			}
		})
	}
}

func TestFull(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(*Config)
		key     string
		fitting int
	}{
		{"max_messages", func(c *Config) { c.MaxMessages = 3 }, "spool.max_messages", 3},
		{"max_bytes", func(c *Config) { c.MaxBytes = 1500 }, "spool.max_bytes", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			tc.cfg(&cfg)
			s := openT(t, cfg, fastBackoff)
			var err error
			var n int
			for n = 0; n < 100; n++ {
				if err = s.Put(context.Background(), entry("app", "", "d"), 0); err != nil {
					break
				}
			}
			if n < tc.fitting {
				t.Errorf("only %d entries fit, want %d", n, tc.fitting)
			}
			if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("Put on a full spool: %v; want ErrFull naming %s", err, tc.key)
			}
			if err := s.Check(context.Background()); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("Check on a full spool: %v; want ErrFull naming %s", err, tc.key)
			}
			// Draining makes room again.
			r := newRecorder(nil)
			if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
				t.Fatal(err)
			}
			waitEmpty(t, s, 5*time.Second)
			if err := s.Check(context.Background()); err != nil {
				t.Errorf("Check after draining: %v", err)
			}
			put(t, s, entry("app", "", "d"), 0)
		})
	}
}

// One app failing forever, slowly, with more entries than its in-flight
// bound, does not delay another app's deliveries.
func TestAppIsolation(t *testing.T) {
	s := openT(t, testConfig(t), Backoff{Initial: 50 * time.Millisecond, Max: 100 * time.Millisecond})
	var cur, peak atomic.Int64
	r := newRecorder(func(ctx context.Context, e Entry, _ int) Verdict {
		if e.App != "bad" {
			return Verdict{Done: true}
		}
		n := cur.Add(1)
		defer cur.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
		}
		return Verdict{}
	})
	for _, d := range devs(150) {
		put(t, s, entry("bad", "", d), 0)
	}
	if err := s.Consume([]string{"bad", "good"}, r.deliver, r.onExpired); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "bad app saturated", func() bool { return cur.Load() == 64 })
	for _, d := range devs(5) {
		put(t, s, entry("good", "", d), 0)
	}
	// Sharing the bad app's slots, they would wait for its calls (300ms
	// each, 150 entries cycling): seconds at best.
	waitFor(t, 3*time.Second, "good app's deliveries", func() bool {
		n := 0
		for k := range r.byKey() {
			if strings.HasPrefix(k, "good/") {
				n++
			}
		}
		return n == 5
	})
	if p := peak.Load(); p != 64 {
		t.Errorf("peak of %d deliver calls in flight for one app, want 64", p)
	}
}

func TestStats(t *testing.T) {
	s := openT(t, testConfig(t), fastBackoff)
	if s.syncer == nil {
		t.Error("embedded spool has no syncer: its writes are never fsynced")
	}
	n, oldest, err := s.Stats(context.Background())
	if err != nil || n != 0 || oldest != 0 {
		t.Fatalf("empty: Stats = %d, %s, %v", n, oldest, err)
	}
	put(t, s, entry("app", "", "d1"), 0)
	time.Sleep(200 * time.Millisecond)
	put(t, s, entry("app", "", "d2"), 0)
	put(t, s, entry("other", "", "d3"), 0)
	n, oldest, err = s.Stats(context.Background())
	if err != nil || n != 3 || oldest < 200*time.Millisecond || oldest > 5*time.Second {
		t.Fatalf("Stats = %d, %s, %v; want 3, >= 200ms", n, oldest, err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// Close, then Open again on the same directory: nothing is lost.
func TestReopen(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxAge = time.Hour
	tune := testTuning
	tune.dedupWindow = time.Minute // the duplicate comes after a restart, however slow
	s, err := open(cfg, fastBackoff, testLog(t), tune)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs(5) {
		put(t, s, entry("app", "ack-"+d, d), 0)
	}
	// A consumer that fails once, then is closed mid-backoff.
	r := newRecorder(func(context.Context, Entry, int) Verdict { return Verdict{RetryAfter: time.Hour / 2} })
	if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "first attempts", func() bool { return len(r.byKey()) == 5 })
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Put(context.Background(), entry("app", "", "late"), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}

	// Bounds changed on the way: the stream is updated.
	cfg.MaxMessages = 6
	s2, err := open(cfg, fastBackoff, testLog(t), tune)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(context.Background())
	if n, _, err := s2.Stats(context.Background()); err != nil || n != 5 {
		t.Fatalf("after reopen: %d entries, %v; want 5", n, err)
	}
	put(t, s2, entry("app", "", "sixth"), 0)
	if err := s2.Put(context.Background(), entry("app", "", "seventh"), 0); !errors.Is(err, ErrFull) {
		t.Errorf("seventh Put: %v, want ErrFull", err)
	}
	// Dedup survives the restart.
	put(t, s2, entry("app", "ack-dev-000", "dev-000"), 0)
	r2 := newRecorder(nil)
	if err := s2.Consume([]string{"app"}, r2.deliver, r2.onExpired); err != nil {
		t.Fatal(err)
	}
	// The 5 wait out their 30-minute Retry-After: the consumer state keeps it.
	waitFor(t, 5*time.Second, "the new entry", func() bool { return len(r2.byKey()) == 1 })
	if n, _, _ := s2.Stats(context.Background()); n != 5 {
		t.Errorf("%d entries left, want the 5 in backoff", n)
	}
}

// A relay stopped abruptly (nothing acked, server shut down under the
// in-flight calls) loses nothing: the next run delivers every entry.
func TestAbruptStop(t *testing.T) {
	cfg := testConfig(t)
	s, err := open(cfg, fastBackoff, testLog(t), testTuning)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs(100) {
		put(t, s, entry("app", "ack-"+d, d), 0)
	}
	r := newRecorder(func(ctx context.Context, _ Entry, _ int) Verdict {
		<-ctx.Done()
		return Verdict{}
	})
	if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "calls in flight", func() bool { calls, _ := r.snapshot(); return len(calls) == 64 })
	s.abort()

	s2 := openT(t, cfg, fastBackoff)
	r2 := newRecorder(nil)
	if err := s2.Consume([]string{"app"}, r2.deliver, r2.onExpired); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every entry", func() bool { return len(r2.byKey()) == 100 })
	waitEmpty(t, s2, 5*time.Second)
}

// Close with deliver calls in flight waits for them until its ctx ends,
// then cancels them; their entries stay.
func TestCloseCancelsInFlight(t *testing.T) {
	cfg := testConfig(t)
	s, err := open(cfg, fastBackoff, testLog(t), testTuning)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, entry("app", "a", "d"), 0)
	r := newRecorder(func(ctx context.Context, _ Entry, _ int) Verdict {
		<-ctx.Done()
		return Verdict{}
	})
	if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the call", func() bool { calls, _ := r.snapshot(); return len(calls) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s", d)
	}
	s2 := openT(t, cfg, fastBackoff)
	r2 := newRecorder(nil)
	if err := s2.Consume([]string{"app"}, r2.deliver, r2.onExpired); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, s2, 5*time.Second)
	if len(r2.byKey()) != 1 {
		t.Errorf("entry not delivered after reopen")
	}
}

// Consume again replaces the set of apps and the callbacks.
func TestConsumeReplaces(t *testing.T) {
	s := openT(t, testConfig(t), fastBackoff)
	r1, r2 := newRecorder(nil), newRecorder(nil)
	if err := s.Consume([]string{"a", "b"}, r1.deliver, r1.onExpired); err != nil {
		t.Fatal(err)
	}
	put(t, s, entry("a", "", "1"), 0)
	waitFor(t, 5*time.Second, "a/1", func() bool { return len(r1.byKey()) == 1 })
	if err := s.Consume([]string{"b", "c"}, r2.deliver, r2.onExpired); err != nil {
		t.Fatal(err)
	}
	put(t, s, entry("a", "", "2"), 0)
	put(t, s, entry("b", "", "3"), 0)
	put(t, s, entry("c", "", "4"), 0)
	waitFor(t, 5*time.Second, "b/3 and c/4", func() bool { return len(r2.byKey()) == 2 })
	time.Sleep(100 * time.Millisecond)
	if got := r2.byKey(); len(got["b/3"]) != 1 || len(got["c/4"]) != 1 {
		t.Errorf("new callbacks saw %v", got)
	}
	if got := r1.byKey(); len(got) != 1 {
		t.Errorf("old callbacks saw %d entries, want just a/1", len(got))
	}
	if n, _, _ := s.Stats(context.Background()); n != 1 {
		t.Errorf("%d entries left, want a/2", n)
	}
	if err := s.Consume([]string{""}, r2.deliver, nil); err == nil {
		t.Error("Consume with an empty app name: no error")
	}
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"dir under a file", Config{Dir: filepath.Join(file, "spool")}, "spool.dir: mkdir "},
		{"no dir", Config{}, "spool.dir: required"},
		{"negative max_age", Config{Dir: t.TempDir(), MaxAge: -time.Second}, "spool.max_age"},
		{"negative max_messages", Config{Dir: t.TempDir(), MaxMessages: -1}, "spool.max_messages"},
		{"negative max_bytes", Config{Dir: t.TempDir(), MaxBytes: -1}, "spool.max_bytes"},
		{"nats_url unreachable", Config{NATSURL: "nats://127.0.0.1:1"}, "spool.nats_url: "},
		{"nats_url invalid", Config{NATSURL: "nats://user:secret@127.0.0.1:port"}, "spool.nats_url: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := open(tc.cfg, Backoff{}, testLog(t), testTuning)
			if err == nil {
				_ = s.Close(context.Background())
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), tc.want) && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to name %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q quotes the password", err)
			}
		})
	}
	t.Run("dir in use", func(t *testing.T) {
		cfg := testConfig(t)
		openT(t, cfg, Backoff{})
		s, err := open(cfg, Backoff{}, testLog(t), testTuning)
		if err == nil {
			_ = s.Close(context.Background())
			t.Fatal("a second spool opened on the same dir")
		}
		if !strings.HasPrefix(err.Error(), "spool.dir: ") || !strings.Contains(err.Error(), "in use") {
			t.Errorf("error %q", err)
		}
	})
}

func TestPutRejects(t *testing.T) {
	s := openT(t, testConfig(t), Backoff{})
	if err := s.Put(context.Background(), Entry{}, 0); err == nil {
		t.Error("Put without an app: no error")
	}
}

// TestSlowAttemptNotHandedOutTwice: an attempt slower than several ack
// waits is not handed out again meanwhile (deliver tells JetStream it is
// still at work every third of the ack wait), so a short ack wait, which
// brings back quickly what a dead relay held, does not make a live one
// deliver twice.
func TestSlowAttemptNotHandedOutTwice(t *testing.T) {
	s := openT(t, testConfig(t), fastBackoff) // ack wait 1 s
	slow := 3500 * time.Millisecond
	r := newRecorder(func(ctx context.Context, e Entry, attempt int) Verdict {
		select {
		case <-time.After(slow):
		case <-ctx.Done():
		}
		return Verdict{Done: true}
	})
	put(t, s, entry("app", "ack-slow", "slow"), 0)
	if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, s, 10*time.Second)
	if calls := r.byKey()["app/slow"]; len(calls) != 1 {
		t.Errorf("%d attempts of an entry whose one attempt took %s (3.5 ack waits), want 1", len(calls), slow)
	}
}
