package spool

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Entries delivered and acked, whose removal the stream never wrote
// (a store that failed to write, in this version after a crash before
// the redo, or in an older one), come back with the stream after a
// restart, below their consumer's ack floor: JetStream never hands them
// out again, and without a sweep they would stay counted and on disk
// for good. Made here by putting back the message blocks of before the
// deliveries under the consumer state of after them.
func TestLeftoversRemoved(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxAge = time.Hour
	msgs := embeddedMsgDir(cfg.Dir)
	saved := t.TempDir() + "/msgs"

	s := openT(t, cfg, fastBackoff)
	for _, d := range devs(20) {
		put(t, s, entry("app", "ack-"+d, d), 0)
	}
	put(t, s, entry("other", "ack-o", "o1"), 0) // an app no consumer serves: kept
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", msgs, saved).CombinedOutput(); err != nil {
		t.Fatalf("saving the blocks: %v %s", err, out)
	}

	s = openT(t, cfg, fastBackoff)
	r := newRecorder(nil)
	if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the 20 deliveries", func() bool {
		n, _, _ := s.Stats(context.Background())
		return len(r.byKey()) == 20 && n == 1
	})
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	if err := os.RemoveAll(msgs); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", saved, msgs).CombinedOutput(); err != nil {
		t.Fatalf("putting the blocks back: %v %s", err, out)
	}
	s = openT(t, cfg, fastBackoff)
	if n, _, _ := s.Stats(context.Background()); n != 21 {
		t.Fatalf("after putting the blocks back: %d entries, want the 21 of before the deliveries", n)
	}
	r2 := newRecorder(nil)
	if err := s.Consume([]string{"app"}, r2.deliver, r2.onExpired); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the delivered entries removed", func() bool {
		n, _, _ := s.Stats(context.Background())
		return n == 1
	})
	time.Sleep(100 * time.Millisecond)
	if calls, _ := r2.snapshot(); len(calls) != 0 {
		t.Errorf("%d deliveries of entries delivered before, want none", len(calls))
	}
}
