package spool

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsServer runs a JetStream server listening on a random loopback port,
// standing in for an external cluster.
func natsServer(t *testing.T) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, DisableJetStreamBanner: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns.ClientURL()
}

// Two relays share an external JetStream: every entry is delivered once,
// by one of them, and when one stops abruptly the other takes over what
// it held.
func TestExternalSharedWork(t *testing.T) {
	url := natsServer(t)
	cfg := Config{NATSURL: url, MaxAge: time.Minute}
	a, b := openT(t, cfg, fastBackoff), openT(t, cfg, fastBackoff)
	apps := []string{"apple_rn", "android_rn", "*"}

	ra, rb := newRecorder(nil), newRecorder(nil)
	if err := a.Consume(apps, ra.deliver, ra.onExpired); err != nil {
		t.Fatal(err)
	}
	if err := b.Consume(apps, rb.deliver, rb.onExpired); err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		put(t, s, entry(apps[i%3], fmt.Sprint("ack", i), fmt.Sprint("dev", i)), 0)
	}
	waitEmpty(t, a, 10*time.Second)
	time.Sleep(100 * time.Millisecond)
	total := map[string]int{}
	for _, r := range []*recorder{ra, rb} {
		for k, calls := range r.byKey() {
			total[k] += len(calls)
		}
	}
	if len(total) != n {
		t.Errorf("%d entries delivered, want %d", len(total), n)
	}
	for k, c := range total {
		if c != 1 {
			t.Errorf("%s delivered %d times", k, c)
		}
	}
	if len(ra.byKey()) == 0 || len(rb.byKey()) == 0 {
		t.Errorf("work not shared: a %d, b %d", len(ra.byKey()), len(rb.byKey()))
	}
}

func TestExternalTakeover(t *testing.T) {
	url := natsServer(t)
	cfg := Config{NATSURL: url, MaxAge: time.Minute}
	a, b := openT(t, cfg, fastBackoff), openT(t, cfg, fastBackoff)

	// a hangs on everything it gets; b delivers.
	var held atomic.Int64
	ra := newRecorder(func(ctx context.Context, _ Entry, _ int) Verdict {
		held.Add(1)
		<-ctx.Done()
		return Verdict{}
	})
	rb := newRecorder(nil)
	if err := a.Consume([]string{"app"}, ra.deliver, ra.onExpired); err != nil {
		t.Fatal(err)
	}
	for _, d := range devs(20) {
		put(t, a, entry("app", "ack-"+d, d), 0)
	}
	waitFor(t, 5*time.Second, "a holding entries", func() bool { return held.Load() == 20 })
	if err := b.Consume([]string{"app"}, rb.deliver, rb.onExpired); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * testTuning.ackWait) // a keeps them: its calls are in progress
	if got := len(rb.byKey()); got != 0 {
		t.Fatalf("b got %d entries a was still working on", got)
	}
	a.abort()
	waitFor(t, 5*time.Second, "b taking over", func() bool { return len(rb.byKey()) == 20 })
	waitEmpty(t, b, 5*time.Second)
	for k, calls := range rb.byKey() {
		if len(calls) != 1 {
			t.Errorf("%s delivered %d times by b", k, len(calls))
		}
	}
}

// A consumer or the whole stream deleted under a running relay (an
// operator, a JetStream that lost its state) is created again.
func TestExternalRepair(t *testing.T) {
	for _, what := range []string{"consumer", "stream"} {
		t.Run(what, func(t *testing.T) {
			url := natsServer(t)
			s := openT(t, Config{NATSURL: url, MaxAge: time.Minute}, fastBackoff)
			r := newRecorder(nil)
			if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
				t.Fatal(err)
			}
			put(t, s, entry("app", "", "before"), 0)
			waitFor(t, 5*time.Second, "first delivery", func() bool { return len(r.byKey()) == 1 })
			waitEmpty(t, s, 5*time.Second)

			ctx := context.Background()
			switch what {
			case "consumer":
				if err := s.js.DeleteConsumer(ctx, StreamName, consumerName("app")); err != nil {
					t.Fatal(err)
				}
			case "stream":
				if err := s.js.DeleteStream(ctx, StreamName); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 10*time.Second, "Put working again", func() bool {
				return s.Put(ctx, entry("app", "", "after"), 0) == nil
			})
			waitFor(t, 10*time.Second, "delivery after repair", func() bool { return len(r.byKey()) == 2 })
		})
	}
}
