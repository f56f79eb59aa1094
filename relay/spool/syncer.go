package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// removalSyncDelay bounds how long a removal (an entry delivered, found
// dead or expired) may stay unsynced: after a power cut within it, the
// entry comes back and is delivered twice, never lost.
const removalSyncDelay = 10 * time.Millisecond

// syncer makes the embedded store's writes durable, in groups.
//
// JetStream (a single server, no AsyncFlush) writes a message to its block
// file before it acknowledges it. With SyncAlways it would also fsync every
// message, one after the other, in the stream's one writing goroutine: the
// spool could take no more entries per second than the disk does fsyncs,
// and every removal cost one more. Instead, Put waits for a round of the
// syncer that starts after its entry was acknowledged, and one round
// fsyncs, once, every block file written since the round before: however
// many Puts wait on it. Removals need not wait: they ask for a round
// within removalSyncDelay.
type syncer struct {
	dir  string                 // the stream's message blocks
	sync func(f *os.File) error // fdatasync where there is one

	mu      sync.Mutex
	next    *syncRound  // the round that waiters join; nil when none is asked for
	running bool        // a goroutine runs rounds until none is asked for
	later   *time.Timer // a round asked for within removalSyncDelay
	closed  bool

	// Only rounds use these.
	blocks   map[string]*block // by file name
	dirDirty bool              // files came, went or were replaced since the directory was last synced

	rounds atomic.Int64 // rounds run, for tests and benchmarks
}

// block is a block file the syncer keeps open, to sync it through.
type block struct {
	f      *os.File
	info   os.FileInfo // f's, as it was when last synced (or opened)
	synced bool        // f was synced as info describes it
}

// syncRound is one sync; done is closed when it is over, err set before.
type syncRound struct {
	done    chan struct{}
	err     error
	waiters int // calls to wait that joined it (under syncer.mu)
}

// newSyncer syncs the block files in dir, the message directory of the
// spool's stream in the embedded store.
func newSyncer(dir string) *syncer {
	return &syncer{dir: dir, sync: datasync, blocks: map[string]*block{}}
}

// wait returns once a round that started after the call has synced every
// block file, or with that round's error, or ctx's.
func (s *syncer) wait(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	r := s.ask()
	r.waiters++
	s.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// soon asks for a round within removalSyncDelay and returns at once.
func (s *syncer) soon() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.later != nil || s.next != nil {
		return // a round that has not started yet will cover it
	}
	s.later = time.AfterFunc(removalSyncDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.later = nil
		if !s.closed {
			s.ask()
		}
	})
}

// ask returns the round that has not started yet, asking for one if need
// be. s.mu is held.
func (s *syncer) ask() *syncRound {
	if s.next == nil {
		s.next = &syncRound{done: make(chan struct{})}
	}
	if !s.running {
		s.running = true
		go s.run()
	}
	return s.next
}

// run runs the rounds asked for, one after the other, until none is.
func (s *syncer) run() {
	for {
		s.mu.Lock()
		r := s.next
		s.next = nil
		if r == nil {
			s.running = false
			s.mu.Unlock()
			return
		}
		if s.later != nil && s.later.Stop() {
			s.later = nil // this round covers the removals that asked for it
		}
		s.mu.Unlock()
		s.rounds.Add(1)
		r.err = s.round()
		close(r.done)
	}
}

// close runs a last round, for whatever was written since the one before,
// closes the blocks and makes later calls to wait fail with ErrClosed.
func (s *syncer) close() error {
	s.mu.Lock()
	s.closed = true
	if s.later != nil {
		s.later.Stop()
		s.later = nil
	}
	r := s.ask()
	s.mu.Unlock()
	<-r.done // no round can start after it: blocks are free
	for name, b := range s.blocks {
		b.f.Close()
		delete(s.blocks, name)
	}
	return r.err
}

// round fsyncs each block file that is new, replaced (compacted) or
// written to since the last round, then the directory if a file came, went
// or was replaced. Appending (a new entry, a removal's tombstone) always
// grows a block, so a block with the size, time and identity it had when
// it was last synced holds nothing unsynced.
func (s *syncer) round() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", s.dir, err)
	}
	seen := make(map[string]bool, len(ents))
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".blk") {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing: nothing left in it to keep
		}
		if err != nil {
			return fmt.Errorf("syncing %s: %w", s.dir, err)
		}
		seen[name] = true
		path := filepath.Join(s.dir, name)
		b := s.blocks[name]
		if b != nil && !os.SameFile(b.info, info) { // replaced by a compaction
			b.f.Close()
			delete(s.blocks, name)
			b = nil
		}
		switch {
		case b == nil:
			f, err := os.Open(path)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("syncing %s: %w", path, err)
			}
			if info, err = f.Stat(); err != nil { // the file opened, if replaced again meanwhile
				f.Close()
				return fmt.Errorf("syncing %s: %w", path, err)
			}
			b = &block{f: f, info: info}
			s.blocks[name] = b
			s.dirDirty = true
		case b.synced && b.info.Size() == info.Size() && b.info.ModTime().Equal(info.ModTime()):
			continue
		}
		if err := s.sync(b.f); err != nil {
			b.synced = false
			return fmt.Errorf("syncing %s: %w", path, err)
		}
		b.info, b.synced = info, true
	}
	for name, b := range s.blocks {
		if !seen[name] {
			b.f.Close()
			delete(s.blocks, name)
			s.dirDirty = true
		}
	}
	if s.dirDirty && canSyncDirs {
		if err := syncPath(s.dir, s.sync); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	s.dirDirty = false
	return nil
}

// canSyncDirs: Windows cannot sync a directory.
const canSyncDirs = runtime.GOOS != "windows"

// startSyncer makes what the embedded server in dir has written so far
// durable (it writes the stream's metadata, and creates the directories
// down to it, without syncing) and returns the syncer for what it writes
// next. It checks first that the server keeps the stream where the syncer
// looks: Puts are never taken for durable when they are not.
func startSyncer(ctx context.Context, dir string) (*syncer, error) {
	s := newSyncer(embeddedMsgDir(dir))
	if err := s.start(ctx, dir); err != nil {
		return nil, err
	}
	return s, nil
}

// start syncs the store in dir once, each file and directory in it: the
// stream's block files by a first round (which then knows them as
// synced), the rest by syncTree.
func (s *syncer) start(ctx context.Context, dir string) error {
	if fi, err := os.Stat(s.dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("the embedded JetStream keeps its messages elsewhere than %s (%v)", s.dir, err)
	}
	if err := syncTree(dir, s.dir, s.sync); err != nil {
		return fmt.Errorf("syncing the store: %w", err)
	}
	return s.wait(ctx)
}

// syncTree syncs dir (it holds the store) and everything in the store,
// files and directories, with sync; but not the block files in msgs, the
// syncer's.
func syncTree(dir, msgs string, sync func(*os.File) error) error {
	if canSyncDirs {
		if err := syncPath(dir, sync); err != nil {
			return err
		}
	}
	return filepath.WalkDir(filepath.Join(dir, server.JetStreamStoreDir), func(path string, d fs.DirEntry, err error) error {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil // removed meanwhile
		case err != nil:
			return err
		case d.IsDir() && !canSyncDirs:
			return nil
		case !d.IsDir() && filepath.Dir(path) == msgs && strings.HasSuffix(path, ".blk"):
			return nil
		}
		if err := syncPath(path, sync); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
}

// syncPath opens the file or directory name and syncs it with sync.
func syncPath(name string, sync func(*os.File) error) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", name, err)
	}
	err = sync(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing %s: %w", name, err)
	}
	return nil
}
