package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Limits and windows of h2Transport.
const (
	// h2StreamWindow is the receive window of each stream (our
	// SETTINGS_INITIAL_WINDOW_SIZE) and h2ConnWindow the connection's: both
	// are credited back once half is used, so that answers never stall.
	h2StreamWindow = 1 << 20
	h2ConnWindow   = 4 << 20
	// h2MaxBody bounds a response body: beyond, the stream is reset.
	h2MaxBody = 1 << 20
	// h2MaxHeaderBytes is our SETTINGS_MAX_HEADER_LIST_SIZE.
	h2MaxHeaderBytes = 64 << 10
	// h2MaxEncoderTable bounds our HPACK encoder's dynamic table, whatever
	// the server allows: 4 KiB already holds every header a push repeats.
	h2MaxEncoderTable = 4096
	// h2InitialMaxStreams is the server's MAX_CONCURRENT_STREAMS until its
	// SETTINGS say otherwise, and h2UnlimitedStreams what we use when they
	// set no limit.
	h2InitialMaxStreams = 100
	h2UnlimitedStreams  = 1000
	// h2MaxStreamID is the last stream id: a connection that used it takes
	// no more requests.
	h2MaxStreamID = 1<<31 - 1
	// h2MaxWindow is the largest flow-control window (RFC 9113 6.9.1).
	h2MaxWindow = 1<<31 - 1
	// A request the server did not process is sent again at once, for as
	// long as its context allows: h2RapidRetries times, then after a pause
	// that doubles from a millisecond up to h2RetryPauseMax, so that a
	// server refusing everything costs a few dials a second, not a hot
	// loop. A request without a deadline gives up after h2RetriesNoDeadline.
	h2RapidRetries      = 8
	h2RetryPauseMax     = 100 * time.Millisecond
	h2RetriesNoDeadline = 64
	// h2DrainAfterWriteError bounds how long the reader of a connection
	// whose write failed keeps reading what the server had already sent
	// (answers, a GOAWAY) before the connection fails its streams.
	h2DrainAfterWriteError = time.Second
	// h2DialTimeout bounds a dial that nobody waits for any more.
	h2DialTimeout        = 30 * time.Second
	h2DefaultPingTimeout = 15 * time.Second
	// h2PooledBody is the largest request body read into a pooled buffer.
	h2PooledBody = 64 << 10
)

// errH2NotProcessed is wrapped by the errors of requests the server did
// not process: h2Transport.RoundTrip sends them again. See h2Retryable for
// which they are.
var errH2NotProcessed = errors.New("request not processed by the server")

// errH2Unusable is returned (unwrapped) by h2Conn.roundTrip when the
// connection took no new stream: the request was not sent and goes to
// another connection.
var errH2Unusable = errors.New("connection takes no new requests")

// h2Transport is an http.RoundTripper speaking HTTP/2 (RFC 9113) over TLS
// connections that dial returns, with at most one live connection per
// authority (req.URL.Host). A connection is dialed on first use, and again
// when it died, got a GOAWAY or ran out of stream ids; concurrent requests
// share one dial.
//
// It exists because golang.org/x/net/http2's Transport costs a goroutine
// per request (and its stack growth), channels and maps: here the caller's
// goroutine encodes and queues its frames, then waits, and one reader
// goroutine per connection dispatches the answers. Bodies are small: the
// request body is read in full before sending and the response body is
// received in full (at most h2MaxBody) before RoundTrip returns.
//
// Not supported: server push (disabled), request trailers, CONNECT,
// Expect: 100-continue, transparent gzip, response trailers (ignored).
// The zero value with dial set is ready to use; the fields are not to be
// changed once it is in use.
type h2Transport struct {
	// dial connects to addr ("host:port"), does the TLS handshake and
	// checks that ALPN chose "h2". It should bound its own time.
	dial func(ctx context.Context, addr string) (net.Conn, error)
	// idleTimeout closes a connection without streams for that long; 0
	// never does.
	idleTimeout time.Duration
	// pingAfter sends a PING on a connection nothing was read from for
	// that long, and pingTimeout (default 15s) closes it when nothing at
	// all (the ACK or any other frame) is read within that time after
	// the PING: a peer or middlebox that silently dropped the connection
	// is found out then, not at each request's deadline. 0 sends no PING.
	pingAfter   time.Duration
	pingTimeout time.Duration

	mu    sync.Mutex
	conns map[string]*h2Conn // by authority: where new requests go
	dials map[string]*h2Dial // dials under way, by authority

	// last is the connection dialed last, until it is forgotten (closed,
	// GOAWAY): streamLimit reports its server's MAX_CONCURRENT_STREAMS.
	last atomic.Pointer[h2Conn]
}

// h2Dial is a dial under way, shared by the requests waiting for it.
type h2Dial struct {
	done chan struct{} // closed when c or err is set
	c    *h2Conn
	err  error
}

// RoundTrip sends req and returns the answer, its body read in full.
func (t *h2Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, pooled, err := h2RequestBody(req)
	if pooled != nil {
		// Every frame is copied to the connection's buffer before
		// roundTrip returns, so the buffer may be used again.
		defer h2BodyPool.Put(pooled)
	}
	if err != nil {
		return nil, err
	}
	if err := h2CheckRequest(req); err != nil {
		return nil, err
	}
	ctx := req.Context()
	authority := req.URL.Host
	var pause *time.Timer
	for retries := 0; ; retries++ {
		c, err := t.conn(ctx, authority)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(req, body)
		if err == nil {
			return resp, nil
		}
		if err == errH2Unusable {
			err = fmt.Errorf("http2 %s: %w", authority, err)
		}
		// A request the server did not process, or that never left, is
		// sent again: on this connection if it still takes requests (a
		// REFUSED_STREAM before its first SETTINGS arrived), else on a
		// new one. No count of attempts bounds this, only the context:
		// a server that sends GOAWAY after every few requests must not
		// turn pushes it would have taken into errors.
		if !h2Retryable(err) || ctx.Err() != nil {
			return nil, err
		}
		if retries < h2RapidRetries {
			continue
		}
		if _, ok := ctx.Deadline(); !ok && retries >= h2RetriesNoDeadline {
			return nil, fmt.Errorf("%w (given up after %d attempts)", err, retries+1)
		}
		wait := min(time.Millisecond<<min(retries-h2RapidRetries, 16), h2RetryPauseMax)
		if pause == nil {
			pause = time.NewTimer(wait)
			defer pause.Stop()
		} else {
			pause.Reset(wait)
		}
		select {
		case <-pause.C:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (given up: %w)", err, ctx.Err())
		}
	}
}

// h2Retryable reports whether a request that failed with err may be sent
// again: the server cannot have processed it (RFC 9113 8.7).
//
// Sent again:
//   - a request that never left: the connection took no new stream
//     (GOAWAY, ids used up, closed; a waiter for a stream slot when the
//     connection starts draining), its frames could not be written at
//     all, or they were still queued in the batchConn, behind the system
//     call under way, when the connection was lost (see batchConn.abort);
//   - RST_STREAM REFUSED_STREAM before the answer's HEADERS, which says
//     the request was not processed;
//   - RST_STREAM PROTOCOL_ERROR before the answer's HEADERS: RFC 9113 does
//     not promise it was not processed, but servers reset streams above
//     their limit so (nginx does while its SETTINGS are in flight), and a
//     server cannot have acted on a request it rejected as malformed;
//     x/net's client sends these again too;
//   - a stream above the last stream id of a GOAWAY.
//
// Not sent again, as the server may have processed it: a stream that got
// its answer's HEADERS, whatever reset follows; a stream reset with any
// other code (CANCEL, INTERNAL_ERROR, ...); a stream at or below a
// GOAWAY's last stream id whose connection is then lost; a request
// written (in part or whole) to a connection that is then lost without a
// GOAWAY. These fail, and the caller decides (the relay spools them).
func h2Retryable(err error) bool {
	return errors.Is(err, errH2Unusable) || errors.Is(err, errH2NotProcessed)
}

// CloseIdleConnections closes the connections that carry no request.
func (t *h2Transport) CloseIdleConnections() {
	t.mu.Lock()
	conns := make([]*h2Conn, 0, len(t.conns))
	for _, c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.closeIfIdle()
	}
}

// conn returns the connection for authority, dialing it if needed.
func (t *h2Transport) conn(ctx context.Context, authority string) (*h2Conn, error) {
	t.mu.Lock()
	if c := t.conns[authority]; c != nil && c.usable() {
		t.mu.Unlock()
		return c, nil
	}
	d := t.dials[authority]
	if d == nil {
		d = &h2Dial{done: make(chan struct{})}
		if t.dials == nil {
			t.dials = make(map[string]*h2Dial)
		}
		t.dials[authority] = d
		// Not bound to this request: the others waiting for this dial
		// must not fail when it is canceled.
		go t.dialConn(context.WithoutCancel(ctx), authority, d)
	}
	t.mu.Unlock()
	select {
	case <-d.done:
		return d.c, d.err
	case <-ctx.Done():
		return nil, fmt.Errorf("http2 %s: waiting for the connection: %w", authority, ctx.Err())
	}
}

// dialConn dials authority for d and makes the result the connection of
// authority.
func (t *h2Transport) dialConn(ctx context.Context, authority string, d *h2Dial) {
	ctx, cancel := context.WithTimeout(ctx, h2DialTimeout)
	defer cancel()
	addr := authority
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), "443")
	}
	nc, err := t.dial(ctx, addr)
	var c *h2Conn
	if err == nil {
		c, err = t.newConn(authority, nc)
	}
	t.mu.Lock()
	delete(t.dials, authority)
	if err != nil {
		d.err = fmt.Errorf("http2 %s: connecting: %w", authority, err)
	} else {
		if t.conns == nil {
			t.conns = make(map[string]*h2Conn)
		}
		t.conns[authority] = c
		d.c = c
		if c.usable() { // else forget ran already
			t.last.Store(c)
		}
	}
	t.mu.Unlock()
	close(d.done)
}

// forget drops c from the connections new requests go to.
func (t *h2Transport) forget(c *h2Conn) {
	t.mu.Lock()
	if t.conns[c.authority] == c {
		delete(t.conns, c.authority)
	}
	t.last.CompareAndSwap(c, nil)
	t.mu.Unlock()
}

// streamLimit reports the server's SETTINGS_MAX_CONCURRENT_STREAMS on the
// connection dialed last, as it is now (a SETTINGS frame may change it at
// any time), and whether it is known: not before that connection's first
// SETTINGS, nor with no connection up. A server that sets no limit gets
// h2UnlimitedStreams. Atomic loads only: lanes asks for every request.
//
// An h2Transport used for several authorities reports the last one
// dialed; a lane of HTTP2Transport serves one.
func (t *h2Transport) streamLimit() (int, bool) {
	c := t.last.Load()
	if c == nil {
		return 0, false
	}
	n := c.peerMaxStreams.Load()
	return int(min(n, h2MaxStreamID)), n >= 0 // an int even on 32 bits
}

// h2Conn is one HTTP/2 connection. Requests write their frames under wmu;
// readLoop, its one reader goroutine, handles what the server sends.
//
// Lock order: wmu before mu, t.mu before mu; t.mu is never taken under
// wmu or mu. A stream is in streams while open: whoever takes it out (the
// reader at its end, the caller on cancel, close) completes it, once.
type h2Conn struct {
	t         *h2Transport
	authority string
	nc        net.Conn
	bc        *batchConn           // nc's, if it is one: tells which requests never left
	tls       *tls.ConnectionState // nil if nc is not TLS
	fr        *http2.Framer        // reads: readLoop; writes (into wbuf): under wmu
	start     time.Time            // for monotonic times as durations since
	lastRead  atomic.Int64         // when the last frame was read, since start

	wmu        sync.Mutex
	wbuf       bytes.Buffer // frames to send in one nc.Write
	werr       error        // the first write error: nothing is written after it
	henc       *hpack.Encoder
	hbuf       bytes.Buffer      // the header block being encoded
	lowerNames map[string]string // request header names, lower-cased

	// Reader goroutine only.
	br          *bufio.Reader     // what fr reads from: HEADERS and CONTINUATION payloads are read here
	hdec        *hpack.Decoder    // response header blocks, emitting into blk
	blk         h2HeaderBlock     // the header block being read
	frag        []byte            // room for a HEADERS or CONTINUATION payload
	canonNames  map[string]string // response header names, canonical
	recvWindow  int64             // what the server may still send
	recvUnacked int64             // received and not yet credited back

	mu                sync.Mutex
	streams           map[uint32]*h2Stream // open streams; nil once closed
	nextID            uint32
	active            uint32 // streams open or about to be, bounded by maxStreams
	maxStreams        uint32
	peerMaxStreams    atomic.Int64  // maxStreams once the server's SETTINGS are in, else -1: for streamLimit
	waiters           []*h2Waiter   // requests waiting for a stream, first come first served
	changed           chan struct{} // closed (and dropped) when the send windows change
	sendWindow        int64         // connection send window
	peerInitialWindow int64
	peerMaxFrame      uint32
	gotSettings       bool
	draining          bool // no new streams: GOAWAY, ids used up, or idle
	closed            bool
	idleSince         time.Duration // when active last fell to 0, since start
	timer             *time.Timer   // runs tick; nil without timeouts
	pingOut           bool          // a PING awaits its ACK
	pingSent          time.Duration
}

// h2Stream is one request in flight.
type h2Stream struct {
	id   uint32
	done chan struct{} // closed once the answer is in or err is set
	at   int64         // with c.bc: where its frames begin in what bc took

	sendWindow int64 // under c.mu
	err        error // set by whoever completes the stream, before done

	// Reader goroutine only, until done is closed.
	recvWindow int64
	unacked    int64
	gotHeader  bool
	status     int
	header     http.Header
	body       []byte
	rd         h2Body        // the response's Body
	resp       http.Response // the response, made in the same allocation
}

// h2Waiter is a request waiting for a stream slot.
type h2Waiter struct {
	ch      chan struct{} // closed when granted or when the connection fails
	granted bool          // under c.mu: a slot was reserved for it
}

// h2Body is a response body received in full.
type h2Body struct{ bytes.Reader }

// Close does nothing: the body is in memory.
func (*h2Body) Close() error { return nil }

// h2PingData is the payload of our PINGs.
var h2PingData = [8]byte{'p', 'u', 's', 'h', 'r', 'l', 'a', 'y'}

// newConn starts HTTP/2 on nc: our preface, SETTINGS and connection window,
// then the reader goroutine. It does not wait for the server's SETTINGS:
// requests go out at once, under the protocol's defaults.
func (t *h2Transport) newConn(authority string, nc net.Conn) (*h2Conn, error) {
	c := &h2Conn{
		t:                 t,
		authority:         authority,
		nc:                nc,
		start:             time.Now(),
		lowerNames:        make(map[string]string),
		canonNames:        make(map[string]string),
		recvWindow:        h2ConnWindow,
		streams:           make(map[uint32]*h2Stream),
		nextID:            1,
		maxStreams:        h2InitialMaxStreams,
		sendWindow:        65535,
		peerInitialWindow: 65535,
		peerMaxFrame:      16384,
	}
	c.peerMaxStreams.Store(-1)
	if s, ok := nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		cs := s.ConnectionState()
		c.tls = &cs
	}
	switch b := nc.(type) {
	case *batchConn:
		c.bc = b
	case *batchTLSConn:
		c.bc = b.batchConn
	}
	c.br = bufio.NewReaderSize(nc, 16<<10)
	c.fr = http2.NewFramer(&c.wbuf, c.br)
	c.hdec = hpack.NewDecoder(4096, c.onField)
	c.hdec.SetMaxStringLength(h2MaxHeaderBytes)
	c.fr.SetMaxReadFrameSize(16384) // the default: we send no SETTINGS_MAX_FRAME_SIZE
	c.fr.SetReuseFrames()           // DATA is copied out before the next read
	c.henc = hpack.NewEncoder(&c.hbuf)

	// The Framer writes into wbuf, which cannot fail.
	c.wbuf.WriteString(http2.ClientPreface)
	_ = c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2MaxHeaderBytes},
	)
	_ = c.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	if err := c.flushLocked(); err != nil {
		nc.Close()
		return nil, err
	}
	if t.idleTimeout > 0 || t.pingAfter > 0 {
		c.mu.Lock()
		c.timer = time.AfterFunc(c.tickEvery(), c.tick)
		c.mu.Unlock()
	}
	go c.readLoop()
	return c, nil
}

// errorf returns an error naming the server (never the path: it holds
// device tokens).
func (c *h2Conn) errorf(format string, args ...any) error {
	return fmt.Errorf("http2 %s: %w", c.authority, fmt.Errorf(format, args...))
}

// usable reports whether c takes new streams.
func (c *h2Conn) usable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.usableLocked()
}

func (c *h2Conn) usableLocked() bool { return !c.closed && !c.draining }

// roundTrip sends req with body on a new stream and waits for the answer.
// It returns errH2Unusable if c takes no new stream.
func (c *h2Conn) roundTrip(req *http.Request, body []byte) (*http.Response, error) {
	ctx := req.Context()
	st := &h2Stream{done: make(chan struct{}), recvWindow: h2StreamWindow}
	for {
		if err := c.reserve(ctx); err != nil {
			return nil, err
		}
		// The stream id is taken and the HEADERS are written under wmu:
		// the server requires increasing ids, the HPACK encoder's state
		// follows the order in which header blocks are sent, and the
		// server's SETTINGS are applied and ACKed under wmu too.
		c.wmu.Lock()
		c.mu.Lock()
		if !c.usableLocked() {
			closeNow := c.releaseLocked()
			c.mu.Unlock()
			c.wmu.Unlock()
			if closeNow {
				c.close(c.errorf("connection drained"))
			}
			return nil, errH2Unusable
		}
		if uint32(len(c.streams)) < c.maxStreams {
			break
		}
		// The slot was reserved before new SETTINGS lowered
		// MAX_CONCURRENT_STREAMS: wait for another.
		c.releaseLocked()
		c.mu.Unlock()
		c.wmu.Unlock()
	}
	st.id = c.nextID
	c.nextID += 2
	if c.nextID > h2MaxStreamID {
		c.draining = true // the next request dials a new connection
		c.failWaitersLocked()
	}
	st.sendWindow = c.peerInitialWindow
	if c.bc != nil {
		// Under wmu, with wbuf empty: its frames are the next bytes.
		st.at = c.bc.accepted.Load()
	}
	c.streams[st.id] = st
	n := c.takeWindowLocked(st, len(body))
	maxFrame := int(c.peerMaxFrame)
	c.mu.Unlock()
	c.encodeHeaders(req, len(body))
	c.writeHeaders(st.id, len(body) == 0, maxFrame)
	if n > 0 {
		c.writeData(st.id, body[:n], n == len(body), maxFrame)
	}
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil {
		// Nothing of this request reached the server (flushLocked says
		// so with errH2NotProcessed), or some of it did: then it may
		// have been processed. The connection stays open for its
		// reader to take what the server already sent.
		c.finish(st, c.errorf("connection lost while sending the request: %w", err))
	}

	unsent, err := c.sendBody(ctx, st, body[n:])
	if err == nil {
		select {
		case <-st.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil && c.cancel(st) {
		return nil, c.errorf("request canceled: %w", err)
	}
	<-st.done // answered (or failed) before it could be canceled
	if st.err != nil {
		return nil, st.err
	}
	if unsent {
		// The server answered before taking the whole body: close our
		// side of the stream.
		c.writeReset(st.id, http2.ErrCodeCancel)
	}
	return c.response(req, st), nil
}

// reserve waits for a stream slot under the server's
// MAX_CONCURRENT_STREAMS, first come first served.
func (c *h2Conn) reserve(ctx context.Context) error {
	c.mu.Lock()
	if !c.usableLocked() {
		c.mu.Unlock()
		return errH2Unusable
	}
	if len(c.waiters) == 0 && c.active < c.maxStreams {
		c.active++
		c.mu.Unlock()
		return nil
	}
	w := &h2Waiter{ch: make(chan struct{})}
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	select {
	case <-w.ch:
		if w.granted {
			return nil
		}
		return errH2Unusable
	case <-ctx.Done():
		c.mu.Lock()
		closeNow := false
		if w.granted {
			closeNow = c.releaseLocked()
		} else {
			for i, o := range c.waiters {
				if o == w {
					c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
					break
				}
			}
		}
		c.mu.Unlock()
		if closeNow {
			c.close(c.errorf("connection drained"))
		}
		return c.errorf("waiting for a stream: %w", ctx.Err())
	}
}

// releaseLocked frees a stream slot, handing it to the first waiter. It
// reports whether c, draining, just lost its last stream and is to be
// closed.
func (c *h2Conn) releaseLocked() bool {
	c.active--
	if c.active == 0 {
		c.idleSince = time.Since(c.start)
	}
	c.grantLocked()
	return c.draining && !c.closed && c.active == 0
}

// grantLocked gives free slots to waiters.
func (c *h2Conn) grantLocked() {
	for len(c.waiters) > 0 && c.active < c.maxStreams && c.usableLocked() {
		w := c.waiters[0]
		c.waiters[0] = nil
		c.waiters = c.waiters[1:]
		w.granted = true
		c.active++
		close(w.ch)
	}
}

// failWaitersLocked sends the waiters elsewhere: c takes no new stream.
func (c *h2Conn) failWaitersLocked() {
	for _, w := range c.waiters {
		close(w.ch)
	}
	c.waiters = nil
}

// changedLocked returns a channel closed when the send windows change or
// c closes.
func (c *h2Conn) changedLocked() <-chan struct{} {
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.changed
}

func (c *h2Conn) broadcastLocked() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// takeWindowLocked takes up to want bytes of send window for st.
//
// Nothing before the server's first SETTINGS: RFC 9113 6.9.3 has a
// server that lowers INITIAL_WINDOW_SIZE accept data sent under the
// default until then, but Go's server (for one) counts its lower window
// from the start, and resets streams that exceed it.
func (c *h2Conn) takeWindowLocked(st *h2Stream, want int) int {
	if !c.gotSettings {
		return 0
	}
	n := min(int64(want), c.sendWindow, st.sendWindow)
	if n <= 0 {
		return 0
	}
	c.sendWindow -= n
	st.sendWindow -= n
	return int(n)
}

// sendBody sends the rest of a request body as the flow-control windows
// open. unsent reports that the stream ended first; err is the context's.
func (c *h2Conn) sendBody(ctx context.Context, st *h2Stream, rest []byte) (unsent bool, err error) {
	for len(rest) > 0 {
		c.wmu.Lock()
		c.mu.Lock()
		open := c.streams[st.id] == st
		var n int
		var changed <-chan struct{}
		if open {
			if n = c.takeWindowLocked(st, len(rest)); n == 0 {
				changed = c.changedLocked()
			}
		}
		maxFrame := int(c.peerMaxFrame)
		c.mu.Unlock()
		var werr error
		if n > 0 {
			c.writeData(st.id, rest[:n], n == len(rest), maxFrame)
			werr = c.flushLocked()
		}
		c.wmu.Unlock()
		switch {
		case !open:
			return true, nil
		case werr != nil:
			// The HEADERS went out: the server may have begun. Not
			// errH2NotProcessed, whatever flushLocked says of this
			// last write.
			c.finish(st, c.errorf("connection lost while sending the request body: %v", werr))
			return true, nil
		case n == 0:
			select {
			case <-changed:
			case <-st.done:
			case <-ctx.Done():
				return true, ctx.Err()
			}
		}
		rest = rest[n:]
	}
	return false, nil
}

// cancel forgets st and resets it on the server. It reports false if st
// had already ended: its done is closed, or about to be.
func (c *h2Conn) cancel(st *h2Stream) bool {
	c.mu.Lock()
	ok, closeNow := c.forgetLocked(st)
	c.mu.Unlock()
	if ok {
		c.writeReset(st.id, http2.ErrCodeCancel)
	}
	if closeNow {
		c.close(c.errorf("connection drained"))
	}
	return ok
}

// forgetLocked takes st out of the open streams if it is still there,
// reporting so, and whether c is now to be closed.
func (c *h2Conn) forgetLocked(st *h2Stream) (ok, closeNow bool) {
	if c.streams[st.id] != st {
		return false, false
	}
	delete(c.streams, st.id)
	return true, c.releaseLocked()
}

// finish completes st with err (nil: the answer is in), unless it ended
// already.
func (c *h2Conn) finish(st *h2Stream, err error) {
	c.mu.Lock()
	ok, closeNow := c.forgetLocked(st)
	c.mu.Unlock()
	if ok {
		st.err = err
		close(st.done)
	}
	if closeNow {
		c.close(c.errorf("connection drained"))
	}
}

// reset fails st with err and resets it on the server with code.
func (c *h2Conn) reset(st *h2Stream, code http2.ErrCode, err error) {
	c.mu.Lock()
	ok, closeNow := c.forgetLocked(st)
	c.mu.Unlock()
	if ok {
		c.writeReset(st.id, code)
		st.err = err
		close(st.done)
	}
	if closeNow {
		c.close(c.errorf("connection drained"))
	}
}

// writeReset sends RST_STREAM. A write error is flushLocked's to handle.
func (c *h2Conn) writeReset(id uint32, code http2.ErrCode) {
	c.wmu.Lock()
	_ = c.fr.WriteRSTStream(id, code)
	_ = c.flushLocked()
	c.wmu.Unlock()
}

// flushLocked hands the queued frames to the connection in one Write.
//
// A write error does not close the connection: what the server sent
// before it failed (answers, a GOAWAY saying which streams it will not
// process) is still to be read. It stops new streams on c, writes nothing
// more, and gives the reader h2DrainAfterWriteError to read what is there
// before it fails the streams left. The error wraps errH2NotProcessed when
// none of the frames were written.
func (c *h2Conn) flushLocked() error {
	if c.wbuf.Len() == 0 {
		return nil
	}
	if c.werr != nil {
		c.wbuf.Reset()
		return fmt.Errorf("write failed before: %w: %w", c.werr, errH2NotProcessed)
	}
	n, err := c.nc.Write(c.wbuf.Bytes())
	c.wbuf.Reset()
	if c.wbuf.Cap() > 256<<10 {
		c.wbuf = bytes.Buffer{} // a large body passed: do not keep its room
	}
	if err == nil {
		return nil
	}
	c.werr = err
	c.mu.Lock()
	c.draining = true
	c.failWaitersLocked()
	c.mu.Unlock()
	_ = c.nc.SetReadDeadline(time.Now().Add(h2DrainAfterWriteError))
	if n == 0 {
		return fmt.Errorf("write: %w: %w", err, errH2NotProcessed)
	}
	return fmt.Errorf("write: %w", err)
}

// encodeHeaders HPACK-encodes the header block of req into hbuf.
func (c *h2Conn) encodeHeaders(req *http.Request, bodyLen int) {
	c.hbuf.Reset()
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	authority := req.Host
	if authority == "" {
		authority = req.URL.Host
	}
	c.field(":method", method)
	c.field(":scheme", "https")
	c.field(":authority", authority)
	// Never indexed: a path with a device token is new with every push,
	// so indexing it would only evict the headers that repeat.
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":path", Value: req.URL.RequestURI(), Sensitive: true})
	for k, vv := range req.Header {
		name := c.lower(k)
		switch name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "content-length":
			continue // connection-specific (RFC 9113 8.2.2), or ours to set
		case "te":
			for _, v := range vv {
				if strings.EqualFold(strings.TrimSpace(v), "trailers") {
					c.field("te", "trailers")
				}
			}
			continue
		}
		for _, v := range vv {
			c.field(name, v)
		}
	}
	if bodyLen > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		c.field("content-length", strconv.Itoa(bodyLen))
	}
}

func (c *h2Conn) field(name, value string) {
	_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: value})
}

// lower returns name lower-cased, from a cache: header names repeat.
func (c *h2Conn) lower(name string) string {
	if v, ok := c.lowerNames[name]; ok {
		return v
	}
	v := strings.ToLower(name)
	if len(c.lowerNames) < 64 {
		c.lowerNames[name] = v
	}
	return v
}

// writeHeaders queues the header block in hbuf as HEADERS and, beyond the
// server's frame size, CONTINUATION frames.
func (c *h2Conn) writeHeaders(id uint32, endStream bool, maxFrame int) {
	block := c.hbuf.Bytes()
	first := block[:min(len(block), maxFrame)]
	block = block[len(first):]
	_ = c.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(block) == 0,
	})
	for len(block) > 0 {
		n := min(len(block), maxFrame)
		_ = c.fr.WriteContinuation(id, n == len(block), block[:n])
		block = block[n:]
	}
}

// writeData queues p as DATA frames of at most maxFrame bytes.
func (c *h2Conn) writeData(id uint32, p []byte, endStream bool, maxFrame int) {
	for len(p) > maxFrame {
		_ = c.fr.WriteData(id, false, p[:maxFrame])
		p = p[maxFrame:]
	}
	_ = c.fr.WriteData(id, endStream, p)
}

// response makes the *http.Response of st's answer.
func (c *h2Conn) response(req *http.Request, st *h2Stream) *http.Response {
	st.rd.Reset(st.body)
	length := int64(len(st.body))
	if req.Method == http.MethodHead {
		length = -1
		if v := st.header["Content-Length"]; len(v) == 1 {
			if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 {
				length = n
			}
		}
	}
	st.resp = http.Response{
		Status:        h2StatusLine(st.status),
		StatusCode:    st.status,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        st.header,
		ContentLength: length,
		Body:          &st.rd,
		Request:       req,
		TLS:           c.tls,
	}
	return &st.resp
}

// readLoop reads and handles the server's frames until the connection
// fails, then fails every stream left.
func (c *h2Conn) readLoop() {
	for {
		err := c.readFrame()
		if se, ok := err.(http2.StreamError); ok {
			// Malformed response headers: that stream fails, the
			// connection (and its HPACK state) is fine.
			c.mu.Lock()
			st := c.streams[se.StreamID]
			c.mu.Unlock()
			if st != nil {
				c.reset(st, se.Code, c.errorf("malformed response: %w", se))
			}
			continue
		}
		if err != nil {
			c.fail(err)
			return
		}
	}
}

// readFrame reads and handles one frame. An error is the connection's,
// but for an http2.StreamError.
func (c *h2Conn) readFrame() error {
	fh, err := c.fr.ReadFrameHeader()
	c.lastRead.Store(int64(time.Since(c.start)))
	if err != nil {
		return err
	}
	if fh.Type == http2.FrameHeaders || fh.Type == http2.FrameContinuation {
		return c.onHeaderFrame(fh)
	}
	f, err := c.fr.ReadFrameForHeader(fh)
	if err != nil {
		return err
	}
	return c.handle(f)
}

// fail closes c after a read or protocol error, telling the server why
// when it broke the protocol.
func (c *h2Conn) fail(err error) {
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		if d := c.fr.ErrorDetail(); d != nil {
			err = fmt.Errorf("%w: %v", err, d)
		}
		c.wmu.Lock()
		_ = c.fr.WriteGoAway(0, http2.ErrCode(ce), nil)
		var goAway []byte
		if c.bc != nil {
			// Sent by closeWith, once the requests queued are dropped.
			goAway = bytes.Clone(c.wbuf.Bytes())
			c.wbuf.Reset()
		} else {
			_ = c.flushLocked() // a last word, if the connection still takes it
		}
		c.wmu.Unlock()
		c.closeWith(c.errorf("connection lost: %w", err), goAway)
		return
	}
	c.close(c.errorf("connection lost: %w", err))
}

// handle handles one frame. An error is the connection's.
func (c *h2Conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.PingFrame:
		return c.onPing(f)
	case *http2.GoAwayFrame:
		c.onGoAway(f)
	case *http2.PushPromiseFrame:
		return fmt.Errorf("PUSH_PROMISE, though push is disabled: %w", http2.ConnectionError(http2.ErrCodeProtocol))
	}
	return nil // PRIORITY, unknown types: nothing to do
}

// stream returns open stream id, or nil if it ended (canceled, reset). A
// frame for a stream we never opened is a connection error.
func (c *h2Conn) stream(id uint32) (*h2Stream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id%2 == 0 || id >= c.nextID {
		return nil, fmt.Errorf("frame for stream %d, never opened: %w", id, http2.ConnectionError(http2.ErrCodeProtocol))
	}
	return c.streams[id], nil
}

// onHeaders handles header block b, well-formed.
func (c *h2Conn) onHeaders(b *h2HeaderBlock) error {
	st, err := c.stream(b.streamID)
	if st == nil {
		return err // nil: an answer to a canceled request, dropped
	}
	if st.gotHeader { // trailers: accepted and ignored
		if !b.endStream {
			c.reset(st, http2.ErrCodeProtocol, c.errorf("malformed response: trailers without END_STREAM"))
			return nil
		}
		c.finish(st, nil)
		return nil
	}
	if b.truncated {
		c.reset(st, http2.ErrCodeCancel, c.errorf("response header larger than %d bytes", h2MaxHeaderBytes))
		return nil
	}
	status := b.status()
	code, err := strconv.Atoi(status)
	if len(status) != 3 || err != nil || code < 100 {
		c.reset(st, http2.ErrCodeProtocol, c.errorf("malformed response: :status %q", status))
		return nil
	}
	if code < 200 {
		if b.endStream {
			c.reset(st, http2.ErrCodeProtocol, c.errorf("malformed response: END_STREAM on %d", code))
		}
		return nil // informational: the final answer follows
	}
	st.gotHeader = true
	st.status = code
	st.header = c.header(b.fields[b.nPseudo:])
	if b.endStream {
		c.finish(st, nil)
		return nil
	}
	if v := st.header["Content-Length"]; len(v) == 1 {
		if n, err := strconv.Atoi(v[0]); err == nil && n > 0 && n <= h2MaxBody {
			st.body = make([]byte, 0, n)
		}
	}
	return nil
}

// header makes the response header of fields, with one slice holding
// every value.
func (c *h2Conn) header(fields []hpack.HeaderField) http.Header {
	h := make(http.Header, len(fields))
	vals := make([]string, len(fields))
	for i, f := range fields {
		k, ok := c.canonNames[f.Name]
		if !ok {
			k = http.CanonicalHeaderKey(f.Name)
			if len(c.canonNames) < 64 {
				c.canonNames[f.Name] = k
			}
		}
		vals[i] = f.Value
		switch old, ok := h[k]; {
		case !ok:
			h[k] = vals[i : i+1 : i+1]
		case &old[0] == &vals[i-len(old)]:
			// Its values so far are the fields just before (vary,
			// vary): one more in vals.
			h[k] = vals[i-len(old) : i+1 : i+1]
		default:
			h[k] = append(old, f.Value)
		}
	}
	return h
}

func (c *h2Conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length) // padding included: it counts against the windows
	c.recvWindow -= n
	if c.recvWindow < 0 {
		return fmt.Errorf("server overflowed the connection window: %w", http2.ConnectionError(http2.ErrCodeFlowControl))
	}
	// Credit the connection as soon as data is consumed, which is now:
	// every stream's body is taken in full.
	var connInc, streamInc uint32
	if c.recvUnacked += n; c.recvUnacked >= h2ConnWindow/2 {
		connInc = uint32(c.recvUnacked)
		c.recvWindow += c.recvUnacked
		c.recvUnacked = 0
	}
	st, err := c.stream(f.StreamID)
	if err != nil {
		return err
	}
	if st != nil {
		streamInc = c.onStreamData(st, f)
	}
	if connInc == 0 && streamInc == 0 {
		return nil
	}
	c.wmu.Lock()
	if connInc > 0 {
		_ = c.fr.WriteWindowUpdate(0, connInc)
	}
	if streamInc > 0 {
		_ = c.fr.WriteWindowUpdate(f.StreamID, streamInc)
	}
	// A write error is flushLocked's: the reader goes on reading.
	_ = c.flushLocked()
	c.wmu.Unlock()
	return nil
}

// onStreamData appends f to st's body and returns how much stream window
// to credit back.
func (c *h2Conn) onStreamData(st *h2Stream, f *http2.DataFrame) uint32 {
	n := int64(f.Length)
	data := f.Data()
	switch st.recvWindow -= n; {
	case !st.gotHeader:
		c.reset(st, http2.ErrCodeProtocol, c.errorf("malformed response: DATA before HEADERS"))
		return 0
	case st.recvWindow < 0:
		c.reset(st, http2.ErrCodeFlowControl, c.errorf("server overflowed the stream window"))
		return 0
	case len(st.body)+len(data) > h2MaxBody:
		c.reset(st, http2.ErrCodeCancel, c.errorf("response body larger than %d bytes", h2MaxBody))
		return 0
	}
	st.body = append(st.body, data...)
	if f.StreamEnded() {
		c.finish(st, nil)
		return 0
	}
	if st.unacked += n; st.unacked < h2StreamWindow/2 {
		return 0
	}
	inc := st.unacked
	st.recvWindow += inc
	st.unacked = 0
	return uint32(inc)
}

func (c *h2Conn) onReset(f *http2.RSTStreamFrame) error {
	st, err := c.stream(f.StreamID)
	if st == nil {
		return err
	}
	// See h2Retryable for what is sent again, and why.
	switch {
	case st.gotHeader:
		c.finish(st, c.errorf("stream reset by the server after its answer began: %v", f.ErrCode))
	case f.ErrCode == http2.ErrCodeRefusedStream:
		c.finish(st, c.errorf("stream refused: %w", errH2NotProcessed))
	case f.ErrCode == http2.ErrCodeProtocol:
		c.finish(st, c.errorf("stream reset by the server before any answer (%v): %w", f.ErrCode, errH2NotProcessed))
	default:
		c.finish(st, c.errorf("stream reset by the server: %v", f.ErrCode))
	}
	return nil
}

func (c *h2Conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	var tableSize uint32
	var newTable bool
	// Under wmu: a request opening its stream after our ACK must see the
	// new settings, as the server will enforce them from then on.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	first := !c.gotSettings
	c.gotSettings = true
	sawMaxStreams := false
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return fmt.Errorf("bad setting %v: %w", s, err)
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			c.maxStreams, sawMaxStreams = s.Val, true
		case http2.SettingInitialWindowSize:
			// Applies to the open streams too (RFC 9113 6.9.2).
			delta := int64(s.Val) - c.peerInitialWindow
			for _, st := range c.streams {
				if st.sendWindow += delta; st.sendWindow > h2MaxWindow {
					return fmt.Errorf("INITIAL_WINDOW_SIZE overflows a stream window: %w", http2.ConnectionError(http2.ErrCodeFlowControl))
				}
			}
			c.peerInitialWindow = int64(s.Val)
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = s.Val
		case http2.SettingHeaderTableSize:
			tableSize, newTable = s.Val, true
		}
		return nil
	})
	if first && !sawMaxStreams {
		c.maxStreams = h2UnlimitedStreams
	}
	c.peerMaxStreams.Store(int64(c.maxStreams))
	c.grantLocked()
	c.broadcastLocked()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if newTable {
		// Our next header block starts with the table size update.
		c.henc.SetMaxDynamicTableSizeLimit(min(tableSize, h2MaxEncoderTable))
	}
	_ = c.fr.WriteSettingsAck()
	_ = c.flushLocked() // a write error is flushLocked's
	return nil
}

func (c *h2Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	var overflowed *h2Stream
	if f.StreamID == 0 {
		if c.sendWindow += inc; c.sendWindow > h2MaxWindow {
			c.mu.Unlock()
			return fmt.Errorf("WINDOW_UPDATE overflows the connection window: %w", http2.ConnectionError(http2.ErrCodeFlowControl))
		}
	} else if st := c.streams[f.StreamID]; st != nil {
		if st.sendWindow += inc; st.sendWindow > h2MaxWindow {
			overflowed = st
		}
	}
	c.broadcastLocked()
	c.mu.Unlock()
	if overflowed != nil {
		c.reset(overflowed, http2.ErrCodeFlowControl, c.errorf("WINDOW_UPDATE overflows the stream window"))
	}
	return nil
}

func (c *h2Conn) onPing(f *http2.PingFrame) error {
	if f.IsAck() {
		c.mu.Lock()
		if f.Data == h2PingData {
			c.pingOut = false
		}
		c.mu.Unlock()
		return nil
	}
	c.wmu.Lock()
	_ = c.fr.WritePing(true, f.Data)
	_ = c.flushLocked() // a write error is flushLocked's
	c.wmu.Unlock()
	return nil
}

// onGoAway stops new streams on c; those the server will not process fail
// at once, the others finish.
func (c *h2Conn) onGoAway(f *http2.GoAwayFrame) {
	c.mu.Lock()
	c.draining = true
	c.failWaitersLocked()
	var refused []*h2Stream
	for id, st := range c.streams {
		if id > f.LastStreamID {
			refused = append(refused, st)
		}
	}
	for _, st := range refused {
		c.forgetLocked(st)
	}
	closeNow := c.active == 0 && !c.closed
	c.mu.Unlock()
	c.t.forget(c)
	err := c.errorf("server sent GOAWAY (%v): %w", f.ErrCode, errH2NotProcessed)
	for _, st := range refused {
		st.err = err
		close(st.done)
	}
	if closeNow {
		c.close(c.errorf("connection closed after GOAWAY (%v)", f.ErrCode))
	}
}

// close closes the connection and fails the streams left with err.
func (c *h2Conn) close(err error) { c.closeWith(err, nil) }

// closeWith is close, sending final (frames) last over a batchConn.
func (c *h2Conn) closeWith(err error, final []byte) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	streams := c.streams
	c.streams = nil
	c.failWaitersLocked()
	c.broadcastLocked()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	// Over a batchConn, what is queued is dropped rather than sent to a
	// connection given up on: the requests whose frames had not left
	// yet are known not processed, and are sent again.
	sentUpTo := int64(h2MaxWindow) << 32
	if c.bc != nil {
		sentUpTo = c.bc.abort(final)
	} else {
		c.nc.Close()
	}
	c.t.forget(c)
	var unsent error
	for _, st := range streams {
		if st.at >= sentUpTo {
			if unsent == nil {
				unsent = fmt.Errorf("%w (before the request left: %w)", err, errH2NotProcessed)
			}
			st.err = unsent
		} else {
			st.err = err
		}
		close(st.done)
	}
}

// closeIfIdle closes c if it carries no request.
func (c *h2Conn) closeIfIdle() {
	c.mu.Lock()
	idle := c.active == 0 && !c.closed
	if idle {
		c.draining = true // no request may start on it from now
	}
	c.mu.Unlock()
	if idle {
		c.close(c.errorf("idle connection closed"))
	}
}

// tickEvery is when tick first runs.
func (c *h2Conn) tickEvery() time.Duration {
	if c.t.pingAfter > 0 && (c.t.idleTimeout == 0 || c.t.pingAfter < c.t.idleTimeout) {
		return c.t.pingAfter
	}
	return c.t.idleTimeout
}

// tick closes c when idle too long or when nothing at all was read within
// pingTimeout of a PING (an ACK or any other frame answers it), sends
// a PING after a silence, and sets its timer for the next of these.
func (c *h2Conn) tick() {
	now := time.Since(c.start)
	t := c.t
	pingTimeout := t.pingTimeout
	if pingTimeout <= 0 {
		pingTimeout = h2DefaultPingTimeout
	}
	var why error
	ping := false
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	next := time.Duration(1<<63 - 1)
	if t.idleTimeout > 0 {
		switch {
		case c.active > 0:
			next = t.idleTimeout // look again then
		case now-c.idleSince >= t.idleTimeout:
			why = c.errorf("connection idle for %v", t.idleTimeout)
			c.draining = true
		default:
			next = c.idleSince + t.idleTimeout - now
		}
	}
	if t.pingAfter > 0 && why == nil {
		last := time.Duration(c.lastRead.Load())
		if c.pingOut && last > c.pingSent {
			// Any frame read since the PING went out shows the
			// connection alive: a server busy answering streams may be
			// slow to ACK a PING, and closing its connection would fail
			// the requests on it.
			c.pingOut = false
		}
		switch {
		case c.pingOut && now-c.pingSent >= pingTimeout:
			why = c.errorf("no answer to a PING within %v", pingTimeout)
		case c.pingOut:
			next = min(next, c.pingSent+pingTimeout-now)
		case now-last >= t.pingAfter:
			ping, c.pingOut, c.pingSent = true, true, now
			next = min(next, pingTimeout)
		default:
			next = min(next, last+t.pingAfter-now)
		}
	}
	if why == nil {
		c.timer.Reset(next)
	}
	c.mu.Unlock()
	if why != nil {
		c.close(why)
		return
	}
	if ping {
		c.wmu.Lock()
		_ = c.fr.WritePing(false, h2PingData)
		_ = c.flushLocked() // a write error is flushLocked's
		c.wmu.Unlock()
	}
}

// h2BodyPool holds request body buffers of up to h2PooledBody bytes.
var h2BodyPool = sync.Pool{New: func() any { return new([]byte) }}

// h2RequestBody reads and closes req.Body. A body of known length up to
// h2PooledBody is read into a pooled buffer, returned as pooled: to be put
// back once the request is sent.
func h2RequestBody(req *http.Request) (body []byte, pooled *[]byte, err error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil, nil
	}
	defer req.Body.Close()
	if n := req.ContentLength; n > 0 && n <= h2PooledBody {
		pooled = h2BodyPool.Get().(*[]byte)
		if int64(cap(*pooled)) < n {
			*pooled = make([]byte, n)
		}
		body = (*pooled)[:n]
		_, err = io.ReadFull(req.Body, body)
	} else {
		body, err = io.ReadAll(req.Body)
	}
	if err != nil {
		return nil, pooled, fmt.Errorf("http2 %s: reading the request body: %w", h2Host(req), err)
	}
	return body, pooled, nil
}

// h2CheckRequest refuses what h2Transport cannot send.
func h2CheckRequest(req *http.Request) error {
	host := h2Host(req)
	switch {
	case req.URL == nil || req.URL.Host == "":
		return errors.New("http2: request without a host")
	case req.URL.Scheme != "https":
		return fmt.Errorf("http2 %s: scheme %q, want https", host, req.URL.Scheme)
	case req.Method == http.MethodConnect:
		return fmt.Errorf("http2 %s: CONNECT is not supported", host)
	case req.Method != "" && !httpguts.ValidHeaderFieldName(req.Method):
		return fmt.Errorf("http2 %s: invalid method %q", host, req.Method)
	case len(req.Trailer) > 0:
		return fmt.Errorf("http2 %s: request trailers are not supported", host)
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("http2 %s: invalid header field name %q", host, k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				// Not the value: it may be a credential.
				return fmt.Errorf("http2 %s: invalid value of header field %q", host, k)
			}
		}
	}
	return nil
}

func h2Host(req *http.Request) string {
	if req.URL == nil {
		return ""
	}
	return req.URL.Host
}

// h2StatusLines are the Status of the responses, "200 OK" and so on,
// made once.
var h2StatusLines = func() (s [600]string) {
	for code := 100; code < len(s); code++ {
		if text := http.StatusText(code); text != "" {
			s[code] = strconv.Itoa(code) + " " + text
		}
	}
	return s
}()

func h2StatusLine(code int) string {
	if code < len(h2StatusLines) && h2StatusLines[code] != "" {
		return h2StatusLines[code]
	}
	return strconv.Itoa(code)
}
