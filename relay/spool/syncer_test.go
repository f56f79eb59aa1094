package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// syncLog records what a syncer synced, and how big each file was then.
type syncLog struct {
	mu      sync.Mutex
	names   []string
	sizes   map[string][]int64
	fail    error         // returned by every sync while set
	block   chan struct{} // while set, each sync says so on entered, then waits for it to be closed
	entered chan struct{}
}

// hold makes every sync wait until release is called; entered tells when
// one starts to.
func (l *syncLog) hold() (entered <-chan struct{}, release func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.block, l.entered = make(chan struct{}), make(chan struct{}, 64)
	block := l.block
	return l.entered, func() {
		l.mu.Lock()
		l.block = nil
		l.mu.Unlock()
		close(block)
	}
}

func (l *syncLog) failWith(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fail = err
}

func newSyncLog() *syncLog { return &syncLog{sizes: map[string][]int64{}} }

func (l *syncLog) sync(f *os.File) error {
	l.mu.Lock()
	block, entered := l.block, l.entered
	l.mu.Unlock()
	if block != nil {
		entered <- struct{}{}
		<-block
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, filepath.Base(f.Name()))
	if l.fail != nil {
		return l.fail
	}
	l.sizes[f.Name()] = append(l.sizes[f.Name()], fi.Size())
	return nil
}

// take returns the names synced since the last take, sorted.
func (l *syncLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.names
	l.names = nil
	slices.Sort(out)
	return out
}

// covered tells whether name was synced while at least size bytes long.
func (l *syncLog) covered(name string, size int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.sizes[name] {
		if s >= size {
			return true
		}
	}
	return false
}

func TestSyncerRounds(t *testing.T) {
	dir := t.TempDir()
	msgs := filepath.Join(dir, "msgs")
	if err := os.Mkdir(msgs, 0o700); err != nil {
		t.Fatal(err)
	}
	path := func(name string) string { return filepath.Join(msgs, name) }
	write := func(name, data string) {
		if err := os.WriteFile(path(name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	appendTo := func(name, data string) {
		f, err := os.OpenFile(path(name), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(data); err != nil {
			t.Fatal(err)
		}
	}
	// replace swaps name for a new file of the same size and time, the way
	// a compaction renames a rewritten block over the old one.
	replace := func(name string) {
		old, err := os.Stat(path(name))
		if err != nil {
			t.Fatal(err)
		}
		write("tmp.new", string(bytes.Repeat([]byte("x"), int(old.Size()))))
		if err := os.Chtimes(path("tmp.new"), old.ModTime(), old.ModTime()); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path("tmp.new"), path(name)); err != nil {
			t.Fatal(err)
		}
	}

	log := newSyncLog()
	s := newSyncer(msgs)
	s.sync = log.sync
	steps := []struct {
		name   string
		change func()
		want   []string
	}{
		{"first round: every block and the directory", func() {
			write("1.blk", "one")
			write("2.blk", "two")
			write("index.db", "state")
		}, []string{"1.blk", "2.blk", "msgs"}},
		{"nothing written", func() {}, nil},
		{"a block that is not a block file", func() { appendTo("index.db", "more") }, nil},
		{"an entry appended", func() { appendTo("2.blk", "entry") }, []string{"2.blk"}},
		{"a new block", func() { write("3.blk", "three") }, []string{"3.blk", "msgs"}},
		{"a block compacted: same size and time, another file", func() { replace("1.blk") }, []string{"1.blk", "msgs"}},
		{"a block removed", func() { os.Remove(path("2.blk")) }, []string{"msgs"}},
		{"removed and written again", func() { write("2.blk", "again") }, []string{"2.blk", "msgs"}},
	}
	for _, st := range steps {
		st.change()
		if err := s.wait(context.Background()); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := log.take(); !slices.Equal(got, st.want) {
			t.Errorf("%s: synced %q, want %q", st.name, got, st.want)
		}
	}
}

// Waiters that come while a round runs share the next one: one fsync for
// all of them, however many.
func TestSyncerGroups(t *testing.T) {
	msgs := t.TempDir()
	if err := os.WriteFile(filepath.Join(msgs, "1.blk"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := newSyncLog()
	entered, release := log.hold()
	s := newSyncer(msgs)
	s.sync = log.sync

	errs := make(chan error, 10)
	go func() { errs <- s.wait(context.Background()) }()
	<-entered // the first round is syncing
	for range 9 {
		go func() { errs <- s.wait(context.Background()) }()
	}
	waitFor(t, 5*time.Second, "9 waiters on the next round", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.next != nil && s.next.waiters == 9
	})
	release()
	for range 10 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := s.rounds.Load(); n != 2 {
		t.Errorf("%d rounds for 1 waiter and then 9 at once, want 2", n)
	}
}

func TestSyncerErrors(t *testing.T) {
	msgs := t.TempDir()
	if err := os.WriteFile(filepath.Join(msgs, "1.blk"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := newSyncLog()
	log.failWith(syscall.EIO)
	s := newSyncer(msgs)
	s.sync = log.sync
	err := s.wait(context.Background())
	if !errors.Is(err, syscall.EIO) || !bytes.Contains([]byte(err.Error()), []byte("1.blk")) {
		t.Fatalf("wait = %v, want EIO naming the block", err)
	}

	// Failed, the block counts as unsynced: the next round tries again.
	log.failWith(nil)
	if err := s.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); !slices.Contains(got, "1.blk") || len(got) < 3 {
		t.Errorf("synced %q, want 1.blk twice and the directory", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, release := log.hold()
	if err := os.WriteFile(filepath.Join(msgs, "1.blk"), []byte("xy"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with a cancelled context = %v", err)
	}
	release()

	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if err := s.wait(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("wait after close = %v, want ErrClosed", err)
	}
	if err := os.RemoveAll(msgs); err != nil {
		t.Fatal(err)
	}
	s = newSyncer(msgs)
	if err := s.wait(context.Background()); err == nil || !bytes.Contains([]byte(err.Error()), []byte(msgs)) {
		t.Errorf("wait on a missing directory = %v, want an error naming it", err)
	}
}

func TestStartSyncerChecksTheLayout(t *testing.T) {
	dir := t.TempDir()
	_, err := startSyncer(context.Background(), dir)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(embeddedMsgDir(dir))) {
		t.Fatalf("startSyncer on a store without the stream = %v, want an error naming where it looked", err)
	}
}

// At start, every file of the store is synced once: its block files by the
// syncer's first round, the rest by syncTree.
func TestStartSyncsEachFileOnce(t *testing.T) {
	cfg := testConfig(t)
	sp := openT(t, cfg, fastBackoff)
	put(t, sp, entry("app", "", "device-start-syncs-once"), time.Hour)
	if err := sp.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	log := newSyncLog()
	s := newSyncer(embeddedMsgDir(cfg.Dir))
	s.sync = log.sync
	if err := s.start(context.Background(), cfg.Dir); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	blocks := 0
	store := filepath.Join(cfg.Dir, server.JetStreamStoreDir)
	err := filepath.WalkDir(store, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(path, ".blk") {
			blocks++
		}
		if n := len(log.sizes[path]); n != 1 {
			rel, _ := filepath.Rel(store, path)
			t.Errorf("%s was synced %d times at start, want once", rel, n)
		}
		return nil
	})
	if err != nil || blocks == 0 {
		t.Fatalf("walking the store: %v, %d block files; want some", err, blocks)
	}
}

// A Put returns only once its entry is in a block file of the stream and
// that file has been synced since.
func TestPutIsSynced(t *testing.T) {
	cfg := testConfig(t)
	s := openT(t, cfg, fastBackoff)
	log := newSyncLog()
	s.syncer.sync = log.sync

	for i, dev := range []string{"device-put-is-synced-1", "device-put-is-synced-2"} {
		put(t, s, entry("app", "", dev), time.Hour)
		name, end := findInBlocks(t, cfg.Dir, dev)
		if name == "" {
			t.Fatalf("put %d: the entry is in no block file under %s", i, embeddedMsgDir(cfg.Dir))
		}
		if !log.covered(name, end) {
			t.Errorf("put %d returned before %s was synced with the entry in it", i, filepath.Base(name))
		}
	}

	// A failed fsync fails the Put, which says what failed.
	log.failWith(syscall.EIO)
	err := s.Put(context.Background(), entry("app", "", "device-put-fails"), time.Hour)
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "spool: put: syncing ") {
		t.Errorf("Put with a failing fsync = %v, want EIO, saying it was syncing", err)
	}
	log.failWith(nil)
	put(t, s, entry("app", "", "device-put-again"), time.Hour)
}

// A removal is synced soon after, without anyone waiting for it.
func TestRemovalIsSynced(t *testing.T) {
	cfg := testConfig(t)
	s := openT(t, cfg, fastBackoff)
	log := newSyncLog()
	s.syncer.sync = log.sync
	put(t, s, entry("app", "", "device-stays"), 30*time.Second) // keeps the block
	put(t, s, entry("app", "", "device-removal-is-synced"), 0)
	name, _ := findInBlocks(t, cfg.Dir, "device-removal-is-synced")
	before, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder(nil)
	if err := s.Consume([]string{"app"}, r.deliver, r.onExpired); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "one entry left", func() bool { n, _, err := s.Stats(context.Background()); return err == nil && n == 1 })
	after, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() <= before.Size() {
		t.Fatalf("removing the entry wrote nothing to %s (%d bytes before, %d after)", name, before.Size(), after.Size())
	}
	waitFor(t, 5*time.Second, "the removal synced", func() bool { return log.covered(name, after.Size()) })
}

// findInBlocks returns the block file of dir's spool that holds marker, and
// where in it marker ends.
func findInBlocks(t *testing.T, dir, marker string) (string, int64) {
	t.Helper()
	blocks, err := filepath.Glob(filepath.Join(embeddedMsgDir(dir), "*.blk"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		data, err := os.ReadFile(b)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(data, []byte(marker)); i >= 0 {
			return b, int64(i + len(marker))
		}
	}
	return "", 0
}

// With the directory's watch, a round looks only at the block files
// written since the one before: it does not scan the others, however
// many, and keeps only the newest open. When the watch loses track (the
// directory replaced), a round scans again.
func TestSyncerWatchesChanges(t *testing.T) {
	dir := t.TempDir()
	msgs := filepath.Join(dir, "msgs")
	if err := os.Mkdir(msgs, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(msgs, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 500; i++ {
		write(fmt.Sprintf("%d.blk", i), "old")
	}
	log := newSyncLog()
	s := newSyncer(msgs)
	s.sync = log.sync
	defer s.close()
	round := func(want ...string) {
		t.Helper()
		if err := s.wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := log.take(); !slices.Equal(got, want) {
			t.Errorf("synced %q, want %q", got, want)
		}
	}
	if err := s.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); len(got) != 501 {
		t.Fatalf("first round synced %d files, want the 500 blocks and the directory", len(got))
	}
	if s.watch == nil {
		t.Skip("no inotify here: each round scans")
	}
	open := func() (n int) {
		for _, b := range s.blocks {
			if b.f != nil {
				n++
			}
		}
		return n
	}
	if n := open(); n != 1 {
		t.Errorf("%d block files open after the first round, want the newest alone", n)
	}
	scans := s.scans.Load()
	write("500.blk", "old+entry")
	round("500.blk")
	write("501.blk", "new")
	round("501.blk", "msgs")
	write("7.blk", "rewritten") // truncated and written in place
	round("7.blk")
	if err := os.Remove(filepath.Join(msgs, "3.blk")); err != nil {
		t.Fatal(err)
	}
	round("msgs")
	if n := s.scans.Load() - scans; n != 0 {
		t.Errorf("%d scans while watching, want none", n)
	}
	if n := open(); n != 1 {
		t.Errorf("%d block files open, want the newest alone", n)
	}

	// The directory replaced: the watch is lost, the next round scans the
	// new one.
	if err := os.Rename(msgs, msgs+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(msgs, 0o700); err != nil {
		t.Fatal(err)
	}
	write("1.blk", "one")
	round("1.blk", "msgs")
	if n := s.scans.Load() - scans; n != 1 {
		t.Errorf("%d scans after the directory was replaced, want 1", n)
	}
	write("1.blk", "one+entry")
	round("1.blk")
}
