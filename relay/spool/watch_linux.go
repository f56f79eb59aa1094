package spool

import (
	"errors"
	"strings"
	"syscall"
	"unsafe"
)

// dirWatch tells which block files of a directory were written, created,
// replaced or removed: inotify(7) on the directory.
//
// The kernel queues a file's IN_MODIFY event within the write(2) or
// ftruncate(2) that changes it, before the call returns, and IN_CREATE,
// IN_DELETE and IN_MOVED_TO within the call that creates, removes or renames
// the name. So once JetStream has acknowledged an entry (it wrote it first),
// the event for its block file is in the queue, and a read of the queue
// that starts afterwards returns it.
type dirWatch struct {
	fd  int
	buf []byte
}

// changes is what a dirWatch read: the block files written, created or
// renamed into the directory (by name), whether a block file came, went or
// was replaced, and whether events were lost (the queue overflowed, or the
// directory itself was removed or moved): then only a scan can tell.
type changes struct {
	blocks map[string]struct{}
	dir    bool
	lost   bool
}

// watchMask: the events that change what a block file or the directory
// holds. IN_Q_OVERFLOW and IN_IGNORED come unasked.
const watchMask = syscall.IN_MODIFY | syscall.IN_CREATE | syscall.IN_DELETE |
	syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO | syscall.IN_DELETE_SELF |
	syscall.IN_MOVE_SELF | syscall.IN_ONLYDIR

// watchDir starts watching dir. Where inotify is out of instances or
// watches (a limit of the user's), it returns nil and no error: the syncer
// then scans the directory each round, as it does where there is no
// inotify.
func watchDir(dir string) (*dirWatch, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOSYS) {
			return nil, nil
		}
		return nil, err
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, watchMask); err != nil {
		syscall.Close(fd)
		if errors.Is(err, syscall.ENOSPC) { // out of watches
			return nil, nil
		}
		return nil, err
	}
	return &dirWatch{fd: fd, buf: make([]byte, 64<<10)}, nil
}

// read takes every event queued so far into c.
func (w *dirWatch) read(c *changes) error {
	for {
		n, err := syscall.Read(w.fd, w.buf)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.EAGAIN) {
			return nil
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return nil
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&w.buf[off]))
			nameAt := off + syscall.SizeofInotifyEvent
			off = nameAt + int(ev.Len)
			if ev.Mask&(syscall.IN_Q_OVERFLOW|syscall.IN_IGNORED|syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF) != 0 {
				c.lost = true
				continue
			}
			if ev.Len == 0 || off > n {
				continue
			}
			name := strings.TrimRight(string(w.buf[nameAt:off]), "\x00")
			if !strings.HasSuffix(name, ".blk") {
				continue
			}
			if ev.Mask&(syscall.IN_CREATE|syscall.IN_DELETE|syscall.IN_MOVED_FROM|syscall.IN_MOVED_TO) != 0 {
				c.dir = true
			}
			if ev.Mask&(syscall.IN_DELETE|syscall.IN_MOVED_FROM) == 0 {
				c.blocks[name] = struct{}{}
			}
		}
	}
}

func (w *dirWatch) close() { syscall.Close(w.fd) }
