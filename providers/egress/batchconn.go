package egress

import (
	"crypto/tls"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// maxQueued is how many bytes a batchConn queues before Write waits for
// its writer: bounded memory under a slow peer.
const maxQueued = 256 << 10

// batchConn is a connection whose writes are queued and sent by one writer
// goroutine, everything queued since its last system call in the next one.
//
// An HTTP/2 client writes a request as two flushes (its HEADERS, then its
// DATA) under a connection-wide lock, one system call each. Here those
// calls are the bulk of a push's cost: with many streams in flight on one
// connection, the frames of several requests now leave in one call, and
// the lock is released without waiting for the kernel.
//
// Write copies p and returns at once; a failed write is reported by the
// next Write, which then writes nothing. It does not close the connection:
// what the peer sent before it failed (answers, a GOAWAY) is still to be
// read, and the reader decides when to give up (h2Conn.flushLocked). Close
// closes it.
type batchConn struct {
	net.Conn
	mu      sync.Mutex
	room    sync.Cond // signalled when the writer took the queue
	queued  []byte
	spare   []byte
	err     error // the first write error, or net.ErrClosed after Close
	closing bool
	// accepted counts the bytes Write took (written under mu), sent those
	// the writer handed to the connection, a failed write's part
	// included: a byte at an offset from sent on never left once the
	// writer has stopped (see abort).
	accepted atomic.Int64
	sent     int64         // under mu
	kick     chan struct{} // wakes the writer; capacity 1
	done     chan struct{} // closed when the writer has returned
}

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c, kick: make(chan struct{}, 1), done: make(chan struct{})}
	b.room.L = &b.mu
	go b.writer()
	return b
}

// Write queues a copy of p for the writer.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	for len(b.queued) >= maxQueued && b.err == nil {
		b.room.Wait()
	}
	if b.err != nil || b.closing {
		err := b.err
		if err == nil {
			err = net.ErrClosed
		}
		b.mu.Unlock()
		return 0, err
	}
	wake := len(b.queued) == 0
	b.queued = append(b.queued, p...)
	b.accepted.Add(int64(len(p)))
	b.mu.Unlock()
	if wake {
		b.wake()
	}
	return len(p), nil
}

func (b *batchConn) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// writer sends whatever is queued, until Close or a write error.
func (b *batchConn) writer() {
	defer close(b.done)
	for range b.kick {
		// Let the goroutines runnable now (requests about to queue their
		// frames) run first, so that their frames leave in this system
		// call rather than in one each: at 32 senders the relay made 2.0
		// writes per notification before, 1.6 since. Alone, it returns
		// at once.
		runtime.Gosched()
		b.mu.Lock()
		out := b.queued
		b.queued, b.spare = b.spare[:0], nil
		closing := b.closing
		b.room.Broadcast()
		b.mu.Unlock()

		var err error
		var n int
		if len(out) > 0 {
			n, err = b.Conn.Write(out)
		}
		b.mu.Lock()
		b.sent += int64(n)
		if cap(out) <= maxQueued {
			b.spare = out[:0]
		}
		if err != nil && b.err == nil {
			b.err = err
		}
		failed := b.err != nil
		more := len(b.queued) > 0
		b.room.Broadcast()
		b.mu.Unlock()
		if failed || (closing && !more) {
			return // Close closes the connection
		}
		if more {
			b.wake()
		}
	}
}

// Close sends what is queued (for at most a second) and closes the
// connection. Later writes fail with net.ErrClosed.
func (b *batchConn) Close() error {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		<-b.done
		return nil
	}
	b.closing = true
	b.mu.Unlock()
	b.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	b.wake()
	<-b.done
	err := b.Conn.Close()
	b.mu.Lock()
	if b.err == nil {
		b.err = net.ErrClosed
	}
	b.room.Broadcast()
	b.mu.Unlock()
	return err
}

// abort closes the connection without sending what is queued (but final,
// last words such as a GOAWAY, if the connection still takes them), and
// returns the offset, in the bytes Write took, from which nothing left: the
// requests queued from there never reached the peer and may be sent again
// elsewhere.
func (b *batchConn) abort(final []byte) (sentUpTo int64) {
	b.mu.Lock()
	// What the writer took is sent or being sent; once it failed,
	// nothing from where its last write stopped.
	sentUpTo = b.accepted.Load() - int64(len(b.queued))
	if b.err != nil {
		sentUpTo = b.sent
	}
	b.queued = append(b.queued[:0], final...)
	b.mu.Unlock()
	b.Close()
	return sentUpTo
}

// batchTLSConn is a batchConn over a TLS connection that tells its
// connection state, as an HTTP/2 client asks.
type batchTLSConn struct {
	*batchConn
	tls *tls.Conn
}

// ConnectionState returns the TLS connection's state.
func (c *batchTLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }
