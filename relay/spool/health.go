package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrDiskFull is returned (wrapped) by Put and Check when spool.dir has too
// little space left; the text names the directory, its free space and the
// reserve the spool keeps. Unlike ErrFull (a configured bound, reached while
// the relay still delivers directly), it makes the relay unready. The spool
// takes entries again by itself once space returns. Test with errors.Is.
var ErrDiskFull = errors.New("spool.dir is full")

// ErrUnavailable is returned (wrapped) by Put and Check when JetStream
// cannot take entries now: the connection is lost, it did not answer in
// time (an external cluster without quorum), or the embedded store failed
// to write. The spool takes entries again by itself once it can. Test with
// errors.Is.
var ErrUnavailable = errors.New("spool is unavailable")

// Reasons Put and Check fail for: a fixed vocabulary, for a metric label.
const (
	ReasonDiskFull    = "disk_full"   // ErrDiskFull
	ReasonUnavailable = "unavailable" // ErrUnavailable
	ReasonFull        = "full"        // ErrFull: spool.max_messages / spool.max_bytes
	ReasonError       = "error"       // anything else
)

// Reason classifies an error from Put or Check for a metric label:
// ReasonDiskFull, ReasonUnavailable, ReasonFull or ReasonError ("" for nil).
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrDiskFull):
		return ReasonDiskFull
	case errors.Is(err, ErrUnavailable):
		return ReasonUnavailable
	case errors.Is(err, ErrFull):
		return ReasonFull
	}
	return ReasonError
}

// Timings of the health watch.
var (
	healthEvery  = 250 * time.Millisecond // how often the watch looks
	probeTimeout = time.Second            // one look at JetStream
	stillEvery   = time.Minute            // a lasting problem is logged again this often
	restartEvery = 5 * time.Second        // between attempts at restarting a broken embedded store
)

// Reserve: the spool stops taking entries while spool.dir has less than
// this free (1/8 of the file system, at least 256 KiB, at most 64 MiB),
// so that JetStream itself never meets a full disk and the spool can
// drain: each removal first writes a 30-byte tombstone, and space comes
// back only as whole blocks (4 MiB) empty, so the worst case (everything
// in one block, 400-byte entries) needs 8% of the space in use. It takes
// entries again from one and a half times the reserve.
const (
	minReserve = 256 << 10
	maxReserve = 64 << 20
)

// health is what the spool knows of its own failures. A problem, once
// seen (by Put, Check, the embedded server's log or the watch), makes Put
// and Check fail at once with its error, without waiting on JetStream;
// the watch, every healthEvery, finds out when it is over.
type health struct {
	log  *slog.Logger
	disk *disk // embedded, where free space can be read; else nil

	// Set by open once the spool works; the watch starts then.
	nc       *nats.Conn
	js       jetstream.JetStream
	stream   jetstream.Stream
	restart  func() error  // embedded: restarts JetStream on the same store; nil for an external one
	storeErr func() string // embedded: the stream's write error as JetStream's health check reports it; "" when none
	key      string        // the config key for connection problems: spool.dir or spool.nats_url

	cur    atomic.Pointer[problem]
	broken atomic.Pointer[string] // embedded: why the store stopped writing (the server's log line); nil while it writes
	record atomic.Bool            // removals are recorded: from the store breaking to the clean-up after its restart

	mu          sync.Mutex
	logged      time.Time // when the current problem was last logged
	removed     []uint64  // stream sequences acked while the store was broken: their removal was perhaps not written
	nextRestart time.Time

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// problem is a reason the spool refuses entries.
type problem struct {
	reason string // ReasonDiskFull or ReasonUnavailable
	err    error
	since  time.Time
}

func newHealth(log *slog.Logger, dir string) *health {
	h := &health{log: log, stop: make(chan struct{}), done: make(chan struct{})}
	if dir != "" && canReadDiskSpace {
		h.disk = &disk{dir: dir}
	}
	return h
}

// admit is Put's first step: it refuses at once while a problem lasts, or
// when an entry of size bytes would eat into the disk's reserve.
func (h *health) admit(size int) error {
	if p := h.cur.Load(); p != nil {
		return p.err
	}
	if h.disk != nil {
		if err := h.disk.room(size); err != nil {
			h.set(ReasonDiskFull, err)
			return err
		}
	}
	return nil
}

// check is Check's first step: the problem that lasts, if any, after a
// fresh look at the disk.
func (h *health) check() error {
	if d := h.disk; d != nil {
		if err := d.read(time.Now(), 0); err == nil {
			if free, reserve := d.state(); free < reserve {
				h.set(ReasonDiskFull, d.fullError())
			}
		}
	}
	if p := h.cur.Load(); p != nil {
		return p.err
	}
	return nil
}

// connKey is the config key a JetStream that cannot be reached is filed
// under: spool.dir (embedded) or spool.nats_url.
func (s *Spool) connKey() string {
	if s.ns != nil {
		return "spool.dir"
	}
	return "spool.nats_url"
}

// unavailable records that JetStream failed to answer or is out of reach;
// the error returned wraps ErrUnavailable and names key.
func (h *health) unavailable(key string, cause error) error {
	if b := h.broken.Load(); b != nil { // the embedded store stopped writing: that is the problem
		if p := h.cur.Load(); p != nil {
			return p.err
		}
	}
	err := fmt.Errorf("%w: %s: %v", ErrUnavailable, key, cause) // not the cause itself: a later Put refused with it waited for nothing
	h.set(ReasonUnavailable, err)
	return err
}

// syncFailed maps an error from syncing the embedded store: no space left
// is a full disk.
func (h *health) syncFailed(err error) error {
	if !errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("spool: put: %w", err)
	}
	full := h.fullError(err)
	h.set(ReasonDiskFull, full)
	return full
}

// fullError describes a full spool.dir, with its free space when it can be read.
func (h *health) fullError(cause error) error {
	if d := h.disk; d != nil {
		if err := d.read(time.Now(), 0); err == nil {
			free, reserve := d.state()
			if free < reserve {
				return d.fullError()
			}
			return fmt.Errorf("%w: the embedded JetStream met a full %s (now %s free); it starts again by itself",
				ErrDiskFull, d.dir, bytesText(free))
		}
	}
	return fmt.Errorf("%w: %w", ErrDiskFull, cause)
}

// writeFailed is told, by the embedded server's log, that its store failed
// to write. JetStream then neither answers Puts nor writes removals until
// it is restarted (the watch does that once there is room again). It runs
// in the server's goroutines, some of its locks held: it must not call it.
func (h *health) writeFailed(msg string) {
	h.record.Store(true)
	if !h.broken.CompareAndSwap(nil, &msg) {
		return
	}
	if strings.Contains(msg, "no space left") {
		h.set(ReasonDiskFull, h.fullError(errors.New("no space left on device")))
		return
	}
	h.set(ReasonUnavailable, fmt.Errorf("%w: spool.dir: the embedded JetStream failed to write; it restarts by itself: %s", ErrUnavailable, msg))
}

// acked is told of every entry removed (acked). While the embedded store
// is broken its removals are not written: the entry would come back after
// a restart, invisible to the consumers but counted and on disk. Its
// sequence is kept and the entry removed again once the store is restarted.
func (h *health) acked(m jetstream.Msg) {
	if h == nil || !h.record.Load() {
		return
	}
	md, err := m.Metadata()
	if err != nil {
		return
	}
	h.mu.Lock()
	h.removed = append(h.removed, md.Sequence.Stream)
	h.mu.Unlock()
}

// set records problem reason, logging it when it starts and, while it
// lasts, once every stillEvery.
func (h *health) set(reason string, err error) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.cur.Load()
	p := &problem{reason: reason, err: err, since: now}
	if old != nil && old.reason == reason {
		p.since = old.since
	}
	h.cur.Store(p)
	switch {
	case old == nil || old.reason != reason:
		h.log.Error("spool: refusing new entries", "reason", reason, "error", err.Error())
		h.logged = now
	case now.Sub(h.logged) >= stillEvery:
		h.log.Error("spool: still refusing new entries", "reason", reason,
			"for", now.Sub(p.since).Round(time.Second), "error", err.Error())
		h.logged = now
	}
}

// clear ends the current problem, if it is reason's.
func (h *health) clear(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.cur.Load()
	if old == nil || old.reason != reason {
		return
	}
	h.cur.Store(nil)
	h.log.Info("spool: taking entries again", "reason", reason, "after", time.Since(old.since).Round(time.Millisecond))
}

// start runs the watch until close.
func (h *health) start() { go h.run() }

func (h *health) close() {
	h.stopOnce.Do(func() {
		close(h.stop)
		if h.nc != nil { // started
			<-h.done
		}
	})
}

func (h *health) run() {
	defer close(h.done)
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		h.tick()
	}
}

// tick looks once: at the disk and the embedded store's write errors, or
// at the connection and, while it is taken to be unavailable, at JetStream.
func (h *health) tick() {
	now := time.Now()
	roomy := true
	if d := h.disk; d != nil {
		if err := d.read(now, 0); err == nil {
			free, reserve := d.state()
			roomy = free >= reserve+reserve/2
			if free < reserve {
				h.set(ReasonDiskFull, d.fullError())
			}
		}
	}
	if b := h.broken.Load(); b != nil {
		if roomy && !now.Before(h.nextRestart) {
			h.recover(b)
		}
		return
	}
	if roomy {
		h.clear(ReasonDiskFull)
	}
	if h.record.Load() {
		h.cleanUp()
	}
	if st := h.nc.Status(); st != nats.CONNECTED {
		h.unavailable(h.key, fmt.Errorf("not connected to JetStream (%s)", st))
		return
	}
	if p := h.cur.Load(); p != nil && p.reason == ReasonUnavailable {
		if h.storeErr != nil {
			// A store that stopped writing says so in its log, which
			// writeFailed hears; should that line ever change, its health
			// check still tells.
			if msg := h.storeErr(); msg != "" {
				h.writeFailed(msg)
				return
			}
		}
		if err := h.probe(); err != nil {
			h.unavailable(h.key, err)
			return
		}
		h.clear(ReasonUnavailable)
	}
}

// probeSubject takes the watch's test entries: in the stream, but no
// app's (an app's subject is hex), so no consumer ever fetches them.
const probeSubject = SubjectPrefix + "probe"

// probe writes a test entry and removes it: whether JetStream takes
// entries again can only be told by one (a node that lost its quorum may
// still answer for the stream). Test entries whose Put timed out but which
// were stored later go with it; failing that, with the next probe or the
// stream's age limit.
func (h *health) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if _, err := h.js.Publish(ctx, probeSubject, nil, jetstream.WithExpectStream(StreamName)); err != nil {
		return fmt.Errorf("a test entry was not taken: %v", err)
	}
	if err := h.stream.Purge(ctx, jetstream.WithPurgeSubject(probeSubject)); err != nil {
		h.log.Debug("spool: removing the test entry failed", "error", err.Error())
	}
	return nil
}

// recover restarts the embedded JetStream, whose store stopped writing at
// the error b, now that there is room again, and then removes the entries
// acked meanwhile. The store's data stays as it is on disk.
func (h *health) recover(b *string) {
	h.log.Warn("spool: restarting the embedded JetStream after a write error", "cause", *b)
	start := time.Now()
	h.broken.CompareAndSwap(b, nil) // a write error from here on calls for another restart
	if err := h.restart(); err != nil {
		h.broken.CompareAndSwap(nil, b)
		h.nextRestart = time.Now().Add(restartEvery)
		h.log.Error("spool: restarting the embedded JetStream failed; trying again", "in", restartEvery, "error", err.Error())
		return
	}
	h.log.Info("spool: embedded JetStream restarted", "took", time.Since(start).Round(time.Millisecond))
	h.cleanUp()
}

// cleanUp removes again the entries acked while the store was broken,
// and, once none is left to remove, stops recording removals.
func (h *health) cleanUp() {
	if h.broken.Load() != nil {
		return
	}
	h.mu.Lock()
	seqs := h.removed
	h.removed = nil
	h.mu.Unlock()
	var left []uint64
	ctx, cancel := context.WithTimeout(context.Background(), 10*probeTimeout)
	defer cancel()
	for i, seq := range seqs {
		err := h.stream.DeleteMsg(ctx, seq)
		if err != nil && !gone(err) {
			left = append(left, seqs[i:]...)
			h.log.Warn("spool: removing entries delivered while the store could not write failed; trying again",
				"left", len(left), "error", err.Error())
			break
		}
	}
	h.mu.Lock()
	h.removed = append(h.removed, left...)
	if len(h.removed) == 0 && h.broken.Load() == nil {
		h.record.Store(false)
	}
	h.mu.Unlock()
	if removed := len(seqs) - len(left); removed > 0 {
		h.log.Info("spool: removed entries delivered while the store could not write", "count", removed)
	}
}

// peerSeen: a replica last heard of longer ago than this (JetStream's
// heartbeat is every second) is taken to be gone.
const peerSeen = 2 * time.Second

// writable tells, from a stream's info, whether it can take an entry: a
// clustered stream needs a leader and a quorum of its replicas in touch.
// (A node that lost its peers still answers for the stream for a while.)
func writable(info *jetstream.StreamInfo) error {
	c := info.Cluster
	if c == nil || (c.RaftGroup == "" && len(c.Replicas) == 0) {
		return nil // a single server
	}
	if c.Leader == "" {
		return errors.New("no leader: the cluster has lost its quorum")
	}
	alive := 1 // the leader
	for _, p := range c.Replicas {
		if !p.Offline && p.Active <= peerSeen {
			alive++
		}
	}
	if n := len(c.Replicas) + 1; alive < n/2+1 {
		return fmt.Errorf("%d of %d replicas in touch, fewer than a quorum", alive, n)
	}
	return nil
}

// gone tells whether a DeleteMsg failed only because the entry is not
// there (any more): its removal was written after all.
func gone(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound {
		return true
	}
	// DeleteMsg passes the server's answer on as text only: "no message
	// found" (10057), "sequence N not found" (10043, below the first).
	msg := err.Error()
	return errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) &&
		(strings.Contains(msg, "no message found") || strings.Contains(msg, "err_code=10043"))
}

// disk tracks the free space of spool.dir's file system: read at most
// every diskEvery while there is plenty, before every Put when it runs
// low.
type disk struct {
	dir string

	mu          sync.Mutex
	at          time.Time // last reading; zero: none
	free, total uint64
	written     uint64 // what Puts added since the last reading, roughly
}

// diskEvery: how old a reading Put may use while free space is plenty.
const diskEvery = 100 * time.Millisecond

// entryOverhead is what a stored entry takes beyond its JSON: record
// header, subject, headers, hash.
const entryOverhead = 160

// read takes a new reading if the last is older than maxAge.
func (d *disk) read(now time.Time, maxAge time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.readLocked(now, maxAge)
}

func (d *disk) readLocked(now time.Time, maxAge time.Duration) error {
	if !d.at.IsZero() && now.Sub(d.at) < maxAge {
		return nil
	}
	free, total, err := diskSpace(d.dir)
	if err != nil {
		return err
	}
	d.free, d.total, d.written, d.at = free, total, 0, now
	return nil
}

// room counts an entry of size bytes about to be written, and refuses it
// with ErrDiskFull when it would eat into the reserve.
func (d *disk) room(size int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.written += uint64(size) + entryOverhead
	maxAge := diskEvery
	if d.free < d.written+8*d.reserve() {
		maxAge = 0 // running low: look before each write
	}
	if err := d.readLocked(now, maxAge); err != nil {
		return nil // cannot tell: JetStream's own write errors will
	}
	if d.free < d.written+d.reserve() {
		return d.fullErrorLocked()
	}
	return nil
}

// state is the last reading's free space and the reserve.
func (d *disk) state() (free, reserve uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.free, d.reserve()
}

// reserve is the space the spool leaves free (d.mu held).
func (d *disk) reserve() uint64 {
	return min(max(d.total/8, minReserve), maxReserve)
}

func (d *disk) fullError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fullErrorLocked()
}

func (d *disk) fullErrorLocked() error {
	return fmt.Errorf("%w: %s has %s free of %s, less than the %s the spool keeps free",
		ErrDiskFull, d.dir, bytesText(d.free), bytesText(d.total), bytesText(d.reserve()))
}

// bytesText writes n in KiB, MiB or GiB, one decimal.
func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
