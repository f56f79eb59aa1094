package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
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
//
// A round must not cost more with more block files: behind one app's deep
// backlog, another app's put and ack cycles make the file store keep a new
// small block file each time its last block empties (thousands of them),
// and a round that listed and stat'ed them all took most of the CPU. So,
// where there is inotify, a round reads from the directory's watch which
// block files were written, created or renamed in, and whether one came or
// went, and syncs those alone (see round for why nothing is missed); it
// scans the whole directory only first, after an error or when the watch
// lost events. It keeps open only the newest block file, the one the file
// store appends to; the others are closed once synced and forgotten.
type syncer struct {
	dir  string                 // the stream's message blocks
	sync func(f *os.File) error // fdatasync where there is one

	mu      sync.Mutex
	next    *syncRound  // the round that waiters join; nil when none is asked for
	running bool        // a goroutine runs rounds until none is asked for
	later   *time.Timer // a round asked for within removalSyncDelay
	closed  bool

	// Only rounds use these.
	watch    *dirWatch         // the directory's events; nil: each round scans
	rescan   bool              // the last round failed: the next one scans
	changes  changes           // read from watch, reused
	blocks   map[string]*block // by file name: the newest, and, scanning, every one
	dirDirty bool              // files came, went or were replaced since the directory was last synced

	rounds atomic.Int64 // rounds run, for tests and benchmarks
	scans  atomic.Int64 // rounds that scanned the directory, for tests
}

// block is a block file the syncer knows of.
type block struct {
	f      *os.File    // open to sync it through; nil once closed
	info   os.FileInfo // the file's, as it was when last synced (or opened)
	synced bool        // the file was synced as info describes it
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
// closes the blocks and the watch and makes later calls to wait fail with
// ErrClosed.
func (s *syncer) close() error {
	s.mu.Lock()
	s.closed = true
	if s.later != nil {
		s.later.Stop()
		s.later = nil
	}
	r := s.ask()
	s.mu.Unlock()
	<-r.done // no round can start after it: blocks and watch are free
	for name := range s.blocks {
		s.forget(name)
	}
	if s.watch != nil {
		s.watch.close()
		s.watch = nil
	}
	return r.err
}

// round fsyncs each block file that is new, replaced (compacted) or
// written to since the last round, then the directory if a block file
// came, went or was replaced.
//
// Where the file store writes (nats-server 2.15's filestore.go): a new
// entry, and the tombstone of a removal, are appended to the last block
// (writeMsgRecord, writeTombstone on lmb), with write(2); a new last block
// is a new file (newMsgBlockForWrite, O_CREATE); a block that empties is
// removed (dirtyCloseWithRemove); a compaction writes the block anew to
// "<index>.new" and renames it over "<index>.blk" (compactWithFloor,
// atomicOverwriteFile); a recovery truncates a block in place
// (rebuildState, truncate). Each of these is a write(2), ftruncate(2),
// creat, unlink or rename in the directory, and so, with the watch, an
// event queued before the call returns: an entry JetStream acknowledged
// (or removed) before this round started has its event queued before the
// round reads the queue. The round syncs every block file named by an
// event it read (no matter its size or time: an event proves a write), and
// the directory if one came, went or was replaced; a write after the read
// leaves its event for the next round. Events before the watch existed, or
// lost (the queue overflowed, the directory was replaced), are covered by
// a scan that starts after the watch (a new one if need be) was set up.
//
// A scan lists the directory and syncs each block file unknown to the
// syncer, replaced, or changed in size or time since it was last synced:
// appending always grows a block, so one with the size, time and identity
// it had when last synced holds nothing unsynced; without a watch, each
// round scans.
func (s *syncer) round() error {
	err := s.look()
	s.rescan = err != nil
	if err == nil {
		s.closeOld()
	}
	return err
}

func (s *syncer) look() error {
	if s.watch != nil {
		if s.changes.blocks == nil {
			s.changes.blocks = map[string]struct{}{}
		}
		c := &s.changes
		clear(c.blocks)
		c.dir, c.lost = false, false
		if err := s.watch.read(c); err != nil {
			return fmt.Errorf("syncing %s: reading its changes: %w", s.dir, err)
		}
		if c.lost {
			s.watch.close()
			s.watch = nil
		} else if !s.rescan {
			return s.syncChanged(c)
		}
	}
	if s.watch == nil {
		w, err := watchDir(s.dir)
		if err != nil {
			return fmt.Errorf("syncing %s: %w", s.dir, err)
		}
		s.watch = w
	}
	return s.scan()
}

// syncChanged syncs the block files c names, and the directory if c says
// a block file came, went or was replaced.
func (s *syncer) syncChanged(c *changes) error {
	if c.dir {
		s.dirDirty = true
	}
	for name := range c.blocks {
		info, err := os.Stat(filepath.Join(s.dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			// Removed since: nothing left in it to keep. Its removal's
			// event is read, this round or the next, and syncs the
			// directory.
			s.forget(name)
			continue
		}
		if err != nil {
			return fmt.Errorf("syncing %s: %w", s.dir, err)
		}
		if err := s.syncBlock(name, info, false); err != nil {
			return err
		}
	}
	return s.syncDir()
}

// scan syncs the block files the directory holds that are new, replaced,
// or changed since they were last synced, then the directory if need be.
func (s *syncer) scan() error {
	s.scans.Add(1)
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
		if b := s.blocks[name]; b != nil && os.SameFile(b.info, info) && b.synced &&
			b.info.Size() == info.Size() && b.info.ModTime().Equal(info.ModTime()) {
			continue
		}
		if err := s.syncBlock(name, info, true); err != nil {
			return err
		}
	}
	for name := range s.blocks {
		if !seen[name] {
			s.forget(name)
			s.dirDirty = true
		}
	}
	return s.syncDir()
}

// syncBlock syncs the block file name, info being what a listing or stat
// found there just before. Scanning, a file new to the syncer, or another
// than the one it knew by that name (a compaction replaced it), or one
// gone meanwhile, makes the directory dirty; with the watch, its events do
// (a file forgotten by closeOld is not new).
func (s *syncer) syncBlock(name string, info os.FileInfo, scanning bool) error {
	path := filepath.Join(s.dir, name)
	b := s.blocks[name]
	if b != nil && !os.SameFile(b.info, info) { // replaced by a compaction
		s.forget(name)
		b = nil
	}
	if b == nil || b.f == nil {
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			s.forget(name)
			s.dirDirty = s.dirDirty || scanning // removed since: the directory changed
			return nil
		}
		if err != nil {
			return fmt.Errorf("syncing %s: %w", path, err)
		}
		if info, err = f.Stat(); err != nil { // the file opened, if replaced again meanwhile
			f.Close()
			return fmt.Errorf("syncing %s: %w", path, err)
		}
		if b == nil || !os.SameFile(b.info, info) {
			b = &block{}
			s.blocks[name] = b
			s.dirDirty = s.dirDirty || scanning
		}
		b.f = f
	}
	if err := s.sync(b.f); err != nil {
		b.synced = false
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	b.info, b.synced = info, true
	return nil
}

// syncDir syncs the directory if a block file came, went or was replaced
// since it was last synced.
func (s *syncer) syncDir() error {
	if s.dirDirty && canSyncDirs {
		if err := syncPath(s.dir, s.sync); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	s.dirDirty = false
	return nil
}

// forget closes the block file name, if open, and forgets it.
func (s *syncer) forget(name string) {
	if b := s.blocks[name]; b != nil {
		if b.f != nil {
			b.f.Close()
		}
		delete(s.blocks, name)
	}
}

// closeOld closes every block file but the newest, the one the file store
// appends to: the others are only written again when a compaction
// replaces them (another file, opened anew) or, rarely, truncated by a
// recovery. With a watch, it forgets them too (their events will tell);
// scanning, it keeps what they were when synced, to tell a change.
func (s *syncer) closeOld() {
	newest, at := "", -1
	for name := range s.blocks {
		if i, err := strconv.Atoi(strings.TrimSuffix(name, ".blk")); err == nil && i > at {
			newest, at = name, i
		}
	}
	for name, b := range s.blocks {
		if name == newest {
			continue
		}
		if s.watch != nil {
			s.forget(name)
		} else if b.f != nil {
			b.f.Close()
			b.f = nil
		}
	}
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
