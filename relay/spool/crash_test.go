package spool

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

const crashEnv = "PUSHRELAY_SPOOL_CRASH_DIR"

// TestCrashChild is the process TestKill9 kills: it spools entries, has
// some of them in flight, says READY and waits for its end.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("only run by TestKill9")
	}
	s, err := open(Config{Dir: dir, MaxAge: time.Hour}, fastBackoff, testLog(t), testTuning)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range devs(50) {
		nb := time.Duration(0)
		if i%5 == 0 {
			nb = 200 * time.Millisecond
		}
		put(t, s, entry("app", "ack-"+d, d), nb)
	}
	r := newRecorder(func(ctx context.Context, e Entry, _ int) Verdict {
		<-ctx.Done() // never finishes
		return Verdict{}
	})
	if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "calls in flight", func() bool { calls, _ := r.snapshot(); return len(calls) >= 20 })
	fmt.Println("READY")
	select {} // until killed
}

// TestKill9 kills a relay process with SIGKILL while it has entries spooled
// and in flight: the next run on the same directory delivers every one.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- true
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			t.Fatal("child ended without READY")
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("child not ready")
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()

	s := openT(t, Config{Dir: dir, MaxAge: time.Hour}, fastBackoff)
	if n, _, err := s.Stats(context.Background()); err != nil || n != 50 {
		t.Fatalf("after the crash: %d entries, %v; want 50", n, err)
	}
	r := newRecorder(nil)
	if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every entry", func() bool { return len(r.byKey()) == 50 })
	waitEmpty(t, s, 5*time.Second)
	for k, calls := range r.byKey() {
		if len(calls) != 1 {
			t.Errorf("%s delivered %d times", k, len(calls))
		}
	}
}
