package egress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// gateConn is a net.Conn whose Write records what it is given and, while
// the gate is shut, blocks after announcing itself on entered.
type gateConn struct {
	net.Conn // nil: only Write, Close and SetWriteDeadline are used
	mu       sync.Mutex
	writes   [][]byte
	entered  chan struct{}
	gate     chan struct{}
	fail     error
	closed   chan struct{}
}

func newGateConn() *gateConn {
	return &gateConn{entered: make(chan struct{}, 100), gate: make(chan struct{}), closed: make(chan struct{})}
}

func (g *gateConn) Write(p []byte) (int, error) {
	g.entered <- struct{}{}
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail != nil {
		return 0, g.fail
	}
	g.writes = append(g.writes, bytes.Clone(p))
	return len(p), nil
}

func (g *gateConn) Close() error                     { close(g.closed); return nil }
func (g *gateConn) SetWriteDeadline(time.Time) error { return nil }

func (g *gateConn) got() [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writes
}

func TestBatchConnSendsWhatQueuedMeanwhileInOneWrite(t *testing.T) {
	g := newGateConn()
	b := newBatchConn(g)
	b.Write([]byte("first"))
	<-g.entered // the writer is inside the first system call
	for i := range 10 {
		if n, err := b.Write(fmt.Appendf(nil, "[%d]", i)); err != nil || n != 3 {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	close(g.gate)
	b.Close()
	want := [][]byte{[]byte("first"), []byte("[0][1][2][3][4][5][6][7][8][9]")}
	if got := g.got(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("underlying writes %q, want %q", got, want)
	}
}

// A failed write is reported by the next Write, and leaves the connection
// open for its reader (what the peer sent before is still to be read) until
// Close.
func TestBatchConnReportsAFailedWriteAndLeavesClosingToClose(t *testing.T) {
	g := newGateConn()
	g.fail = errors.New("connection reset by peer")
	close(g.gate)
	b := newBatchConn(g)
	if _, err := b.Write([]byte("lost")); err != nil {
		t.Fatalf("the first Write already failed: %v", err)
	}
	<-b.done // the writer stopped at the failure
	if _, err := b.Write([]byte("next")); err == nil || err.Error() != "connection reset by peer" {
		t.Errorf("Write after a failed write = %v, want that failure", err)
	}
	select {
	case <-g.closed:
		t.Fatal("a failed write closed the connection under its reader")
	default:
	}
	b.Close()
	select {
	case <-g.closed:
	default:
		t.Fatal("Close did not close the connection")
	}
}

func TestBatchConnCloseSendsTheQueueThenRefusesWrites(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- nil
			return
		}
		defer c.Close()
		all, _ := io.ReadAll(c)
		received <- all
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := newBatchConn(raw)
	var want bytes.Buffer
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				chunk := fmt.Appendf(nil, "<%d:%d>", w, i)
				mu.Lock() // the order of writes is the order on the wire
				want.Write(chunk)
				if _, err := b.Write(chunk); err != nil {
					t.Error(err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
	if got := <-received; !bytes.Equal(got, want.Bytes()) {
		t.Errorf("the peer got %d bytes, want the %d written, in order", len(got), want.Len())
	}
}

// abort drops what is queued, sends its last words, and says from where
// nothing left.
func TestBatchConnAbortDropsTheQueue(t *testing.T) {
	g := newGateConn()
	b := newBatchConn(g)
	b.Write([]byte("first"))
	<-g.entered // the writer is inside the first system call
	b.Write([]byte("[queued]"))
	upTo := make(chan int64)
	go func() { upTo <- b.abort([]byte("bye")) }()
	waitFor(t, "abort to drop the queue", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.closing
	})
	close(g.gate)
	if got := <-upTo; got != int64(len("first")) {
		t.Errorf("abort = %d, want %d: the queued bytes never left", got, len("first"))
	}
	want := [][]byte{[]byte("first"), []byte("bye")}
	if got := g.got(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("underlying writes %q, want %q", got, want)
	}
}

// After a failed write, abort says nothing left from where it failed.
func TestBatchConnAbortAfterAFailedWrite(t *testing.T) {
	g := newGateConn()
	b := newBatchConn(g)
	b.Write([]byte("sent"))
	<-g.entered
	close(g.gate)
	waitFor(t, "the first write", func() bool { return len(g.got()) == 1 })
	g.mu.Lock()
	g.fail = errors.New("connection reset by peer")
	g.mu.Unlock()
	b.Write([]byte("lost"))
	<-g.entered
	<-b.done // the writer stopped at the failure
	if got := b.abort(nil); got != int64(len("sent")) {
		t.Errorf("abort = %d, want %d", got, len("sent"))
	}
}
