//go:build linux

package spool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	restartNEnv   = "SPOOL_RESTART_N"   // how many entries TestRestartDepth fills
	restartDirEnv = "SPOOL_RESTART_DIR" // set for TestRestartChild, by TestRestartDepth
)

// TestRestartDepth measures a restart with many entries waiting (issue 20:
// ready within 10 s, memory within the bound it had before the outage).
// It fills a spool with $SPOOL_RESTART_N entries of an app, due in an hour,
// closes it, and reopens it in a new process (TestRestartChild), whose
// memory is that of the restart alone; that process also opens an empty
// spool first, for the memory before an outage. Run:
//
//	SPOOL_RESTART_N=200000 go test ./relay/spool/ -run '^TestRestartDepth$' -v -timeout 30m
func TestRestartDepth(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(restartNEnv))
	if n <= 0 {
		t.Skip("set " + restartNEnv + " to the number of entries")
	}
	cfg := Config{Dir: t.TempDir(), MaxAge: 2 * time.Hour, MaxMessages: 2_000_000, MaxBytes: 4 << 30}
	s, err := open(cfg, Backoff{Initial: time.Second, Max: 5 * time.Minute}, testLog(t), testTuning)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	fillFast(t, s, "down", n, time.Hour)
	t.Logf("filled %d in %v, heap %.1f MiB", n, time.Since(start).Round(time.Millisecond), heapMiB())
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("SPOOL_RESTART_CRASH") != "" {
		// As after a kill -9 before the stream's state was written: the
		// store recovers from its block files.
		if err := os.Remove(filepath.Join(embeddedMsgDir(cfg.Dir), "index.db")); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{t.TempDir(), cfg.Dir} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRestartChild$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), restartDirEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("restart on %s: %v\n%s", dir, err, out)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if strings.Contains(sc.Text(), "RESTART") {
				t.Log(strings.TrimSpace(sc.Text()))
			}
		}
	}
}

// TestRestartChild opens the spool in $SPOOL_RESTART_DIR, as a relay
// restarting would, and tells how long it took to be ready (Open, then
// Consume, then a first Put answered) and the memory it took.
func TestRestartChild(t *testing.T) {
	dir := os.Getenv(restartDirEnv)
	if dir == "" {
		t.Skip("only run by TestRestartDepth")
	}
	runtime.MemProfileRate = 4096
	rss0 := procStatusKiB(t, "VmRSS")
	t0 := time.Now()
	s, err := open(Config{Dir: dir, MaxAge: 2 * time.Hour, MaxMessages: 2_000_000, MaxBytes: 4 << 30},
		Backoff{Initial: time.Second, Max: 5 * time.Minute}, testLog(t), defaultTuning)
	if err != nil {
		t.Fatal(err)
	}
	opened := time.Since(t0)
	if err := s.Consume([]string{"down", "up"}, func(context.Context, Entry, int) Verdict { return Verdict{} }, nil); err != nil {
		t.Fatal(err)
	}
	consumed := time.Since(t0)
	put(t, s, entry("up", "restart", "device-restart"), time.Hour)
	ready := time.Since(t0)
	depth, _, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // what the consumers do with the depth once running
	heap := heapMiB()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("RESTART memstats heap-objects=%d largest-live-classes: heap-inuse=%.1fMiB stack=%.1fMiB sys=%.1fMiB\n",
		ms.HeapObjects, float64(ms.HeapInuse)/(1<<20), float64(ms.StackInuse)/(1<<20), float64(ms.Sys)/(1<<20))
	rss := procStatusKiB(t, "VmRSS")
	if name := os.Getenv("SPOOL_RESTART_HEAPPROFILE"); name != "" && depth > 1 { // the deep spool, not the empty one
		f, err := os.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	fmt.Printf("RESTART depth=%d open=%v consume=%v ready=%v rss-before=%.1fMiB rss=%.1fMiB (+%.1f) hwm=%.1fMiB heap=%.1fMiB\n",
		depth, opened.Round(time.Millisecond), consumed.Round(time.Millisecond), ready.Round(time.Millisecond),
		float64(rss0)/1024, float64(rss)/1024, float64(rss-rss0)/1024, float64(procStatusKiB(t, "VmHWM"))/1024, heap)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// procStatusKiB is a field of /proc/self/status, in KiB.
func procStatusKiB(t *testing.T, field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}
