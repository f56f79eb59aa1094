package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// smallDisk mounts a file system of size bytes (tmpfs) for the test and
// returns its directory; it skips the test where it cannot (not root, no
// mount). It is unmounted after everything the test opened on it is closed.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if !canReadDiskSpace {
		t.Skip("free space cannot be read on this system")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a %s tmpfs: %v: %s", size, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { // registered first: runs after the spool's Close
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// diskOutage answers deliveries: failures while down, then deliveries; it
// counts, per entry, the deliveries (Done verdicts).
type diskOutage struct {
	down      atomic.Bool
	mu        sync.Mutex
	delivered map[string]int
}

func newDiskOutage() *diskOutage {
	o := &diskOutage{delivered: map[string]int{}}
	o.down.Store(true)
	return o
}

func (o *diskOutage) deliver(_ context.Context, e Entry, _ int) Verdict {
	if o.down.Load() {
		return Verdict{}
	}
	o.mu.Lock()
	o.delivered[key(e)]++
	o.mu.Unlock()
	return Verdict{Done: true}
}

// checkOnce checks that every accepted entry (by key) was delivered
// exactly once, and no other entry more than once: one whose Put failed
// may still have been stored (its answer lost), never twice.
func (o *diskOutage) checkOnce(t *testing.T, accepted map[string]bool) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	lost := 0
	for k := range accepted {
		if o.delivered[k] == 0 {
			lost++
		}
	}
	twice := 0
	for k, n := range o.delivered {
		if n > 1 {
			twice++
			t.Errorf("%s delivered %d times", k, n)
		}
	}
	if lost > 0 || twice > 0 {
		t.Fatalf("of %d entries accepted, %d never delivered; %d delivered more than once", len(accepted), lost, twice)
	}
}

func (o *diskOutage) count() (entries, twice int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, n := range o.delivered {
		if n > 1 {
			twice++
		}
	}
	return len(o.delivered), twice
}

// putWithin puts e with a deadline d away and tells whether the deadline
// passed meanwhile: a Put that waited for JetStream instead of refusing at
// once.
func putWithin(s *Spool, e Entry, d time.Duration) (err error, waited bool) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err = s.Put(ctx, e, 0)
	return err, ctx.Err() != nil
}

// fill puts entries until the spool refuses one, and returns how many it
// took and the refusal, which must not have waited for its 10 s deadline.
func fill(t *testing.T, s *Spool, prefix string) (int, error) {
	t.Helper()
	for i := 0; ; i++ {
		err, waited := putWithin(s, entry("app", fmt.Sprint(prefix, "-ack-", i), fmt.Sprint(prefix, "-dev-", i)), 10*time.Second)
		if waited {
			t.Fatalf("Put %d waited for its deadline instead of refusing at once: %v", i, err)
		}
		if err != nil {
			return i, err
		}
		if i > 1_000_000 {
			t.Fatal("the spool never refused an entry")
		}
	}
}

// assertDiskFull checks that err is a full spool.dir, named, with its
// free space.
func assertDiskFull(t *testing.T, what string, err error, dir string) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("%s: no error on a full disk", what)
	case !errors.Is(err, ErrDiskFull), errors.Is(err, ErrFull):
		t.Fatalf("%s: %v, want ErrDiskFull (and not ErrFull)", what, err)
	case !strings.Contains(err.Error(), "spool.dir"), !strings.Contains(err.Error(), dir), !strings.Contains(err.Error(), "free"):
		t.Fatalf("%s: %q does not name spool.dir, the directory and its free space", what, err)
	}
	if got := Reason(err); got != ReasonDiskFull {
		t.Fatalf("%s: Reason = %q, want %q", what, got, ReasonDiskFull)
	}
}

// The spool fills its disk during an outage: it refuses entries at once,
// with spool.dir and its free space named, and Check fails; JetStream
// itself never meets the full disk (the reserve). When the outage ends the
// spool drains, every entry delivered once, and takes entries again by
// itself.
func TestDiskFullRefusesAndRecovers(t *testing.T) {
	dir := smallDisk(t, "4m")
	s := openT(t, Config{Dir: dir, MaxAge: time.Minute}, fastBackoff)
	o := newDiskOutage()
	if err := s.Consume([]string{"app"}, o.deliver, nil); err != nil {
		t.Fatal(err)
	}

	n, err := fill(t, s, "fill")
	if n < 1000 {
		t.Fatalf("refused after %d entries on 4 MiB: %v", n, err)
	}
	assertDiskFull(t, "the Put that found the disk full", err, dir)
	t.Logf("%d entries took the disk; then: %v", n, err)
	for i := range 20 {
		err, waited := putWithin(s, entry("app", fmt.Sprint("more-", i), fmt.Sprint("more-", i)), 10*time.Second)
		if waited {
			t.Fatalf("a Put on the full disk waited for its deadline: %v", err)
		}
		assertDiskFull(t, "a Put on the full disk", err, dir)
	}
	assertDiskFull(t, "Check", s.Check(context.Background()), dir)
	if b := s.health.broken.Load(); b != nil {
		t.Fatalf("JetStream met the full disk: %s", *b)
	}

	o.down.Store(false)
	waitEmpty(t, s, 60*time.Second)
	waitFor(t, 10*time.Second, "Check passing again", func() bool { return s.Check(context.Background()) == nil })
	put(t, s, entry("app", "after", "after"), 0)
	waitEmpty(t, s, 10*time.Second)
	accepted := map[string]bool{"app/after": true}
	for i := range n {
		accepted[fmt.Sprint("app/fill-dev-", i)] = true
	}
	o.checkOnce(t, accepted)
}

// Something else fills the disk to the last byte while entries wait:
// JetStream's store fails to write (the removals of entries delivered
// meanwhile too) and refuses everything until restarted. The spool says
// disk full, restarts it by itself once space returns, removes the entries
// delivered meanwhile, and a later run delivers none of them again.
func TestDiskFilledByOthers(t *testing.T) {
	dir := smallDisk(t, "4m")
	cfg := Config{Dir: dir, MaxAge: time.Minute}
	s := openT(t, cfg, fastBackoff)
	o := newDiskOutage()
	if err := s.Consume([]string{"app"}, o.deliver, nil); err != nil {
		t.Fatal(err)
	}
	accepted := map[string]bool{}
	for i := range 500 {
		put(t, s, entry("app", fmt.Sprint("ack-", i), fmt.Sprint("dev-", i)), 0)
		accepted[fmt.Sprint("app/dev-", i)] = true
	}

	// Another writer takes every byte left.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	for { // and the last partial block
		g, _ := os.OpenFile(filler, os.O_WRONLY|os.O_APPEND, 0)
		_, err := g.Write(buf[:1])
		g.Close()
		if err != nil {
			break
		}
	}
	// A Put may still fit in a page the store had begun; then they are refused.
	for i := 0; ; i++ {
		err := s.Put(context.Background(), entry("app", fmt.Sprint("x-", i), fmt.Sprint("x-", i)), 0)
		if err != nil {
			assertDiskFull(t, "a Put on the full disk", err, dir)
			break
		}
		accepted[fmt.Sprint("app/x-", i)] = true
		if i > 100 {
			t.Fatal("Puts still taken on a full disk")
		}
	}

	// The diskOutage ends: deliveries go on, their removals cannot be written.
	o.down.Store(false)
	waitFor(t, 30*time.Second, "every entry delivered", func() bool { got, _ := o.count(); return got == len(accepted) })
	waitFor(t, 10*time.Second, "the store's write error", func() bool { return s.health.broken.Load() != nil })
	assertDiskFull(t, "Check", s.Check(context.Background()), dir)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "Check passing again", func() bool { return s.Check(context.Background()) == nil })
	waitFor(t, 10*time.Second, "Put working again", func() bool {
		return s.Put(context.Background(), entry("app", "after", "after"), 0) == nil
	})
	accepted["app/after"] = true
	waitEmpty(t, s, 30*time.Second) // the removals lost to the full disk are done again
	o.checkOnce(t, accepted)

	// A later run finds nothing left and delivers nothing again.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := openT(t, cfg, fastBackoff)
	if err := s2.Consume([]string{"app"}, o.deliver, nil); err != nil {
		t.Fatal(err)
	}
	if msgs, _, err := s2.Stats(ctx); err != nil || msgs != 0 {
		t.Fatalf("after a restart: %d entries left (%v), want 0", msgs, err)
	}
	time.Sleep(3 * testTuning.ackWait)
	o.checkOnce(t, accepted)
}

// BenchmarkAdmit is what the disk check adds to each Put while space is
// plenty: compare with BenchmarkPut.
func BenchmarkAdmit(b *testing.B) {
	h := newHealth(testLog(b), b.TempDir())
	if h.disk == nil {
		b.Skip("free space cannot be read here")
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := h.admit(400); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Should the embedded server's log line for a write error ever change, its
// health check still tells: Puts, after a short wait, find the store
// broken, and it is restarted once space returns.
func TestDiskFullUnheardStoreError(t *testing.T) {
	dir := smallDisk(t, "4m")
	hearStoreLog = false
	t.Cleanup(func() { hearStoreLog = true })
	s := openT(t, Config{Dir: dir, MaxAge: time.Minute}, fastBackoff)
	o := newDiskOutage()
	if err := s.Consume([]string{"app"}, o.deliver, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		put(t, s, entry("app", fmt.Sprint("ack-", i), fmt.Sprint("dev-", i)), 0)
	}
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 8<<20), 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v", err)
	}
	o.down.Store(false) // the removals meet the full disk
	waitFor(t, 30*time.Second, "every entry delivered", func() bool { got, _ := o.count(); return got == 200 })
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "Put working again", func() bool {
		err, _ := putWithin(s, entry("app", "after", "after"), time.Second)
		return err == nil
	})
}
