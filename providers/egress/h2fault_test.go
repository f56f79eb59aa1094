package egress

import (
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
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// faultOpts say how a faultServer misbehaves. The zero value answers every
// request, a millisecond or so late.
type faultOpts struct {
	// goAwayEvery sends GOAWAY after this many requests on a connection,
	// with the last of them as its last stream id: those up to it are
	// answered, those above it are not processed, then the connection
	// closes (nginx's keepalive_requests).
	goAwayEvery int
	goAwayCode  http2.ErrCode
	// answerThenClose: at the GOAWAY, answer what is pending at once, then
	// close the connection without reading what the client sent meanwhile
	// (its next writes fail: connection reset).
	answerThenClose bool
	// closeAtGoAway: close the connection right after the GOAWAY, leaving
	// the requests it processed unanswered (truly lost).
	closeAtGoAway bool
	// closeEvery closes the connection (TCP, no GOAWAY) after this many
	// answers on it.
	closeEvery int
	// noPingAck never answers a PING (but answers requests).
	noPingAck bool
	// answerEvery is how often answers leave, in batches; default 1ms.
	answerEvery time.Duration
	// limit resets, with resetCode, a stream that arrives while this many
	// are in progress, whatever the SETTINGS said.
	limit     int
	resetCode http2.ErrCode
	// advertise is the MAX_CONCURRENT_STREAMS of the first SETTINGS; 0
	// sends none (unlimited).
	advertise uint32
	// flapEvery flips MAX_CONCURRENT_STREAMS between 1 and 1000 after
	// every this many answers on a connection (starting at advertise),
	// enforcing it at once: a stream above it is REFUSED_STREAM.
	flapEvery int
}

// faultServer is an HTTP/2 server over TLS on loopback written with raw
// frames, that misbehaves as its faultOpts say. It answers POST /r/<id>
// with <id> and counts, by id, the requests it processed (read in full and
// took on) and those it answered.
type faultServer struct {
	opts  faultOpts
	url   string
	certs *tls.Config // for clients: trusts the server's certificate

	mu        sync.Mutex
	processed map[string]int
	answered  map[string]int

	conns, resets, goAways, pings atomic.Int32
}

func newFaultServer(t *testing.T, opts faultOpts) *faultServer {
	t.Helper()
	if opts.answerEvery == 0 {
		opts.answerEvery = time.Millisecond
	}
	certs := newH2Server(t, http.NotFoundHandler(), nil, nil) // for its certificate
	cfg := certs.TLS.Clone()
	cfg.NextProtos = []string{http2.NextProtoTLS}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &faultServer{
		opts: opts, url: "https://" + ln.Addr().String(),
		certs:     newH2Dialer(certs, false).cfg,
		processed: make(map[string]int), answered: make(map[string]int),
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			wg.Go(func() { s.serve(c) })
		}
	})
	return s
}

// faultConn is one connection of a faultServer.
type faultConn struct {
	s  *faultServer
	nc net.Conn
	fr *http2.Framer

	mu       sync.Mutex // state and writes; the reader reads without it
	streams  map[uint32]string
	pending  []uint32 // processed, to answer
	ids      map[uint32]string
	active   int // streams opened and neither answered nor reset
	nReq     int
	nAns     int
	maxCur   uint32 // MAX_CONCURRENT_STREAMS in force when flapping
	maxSeen  uint32 // the highest stream id opened
	maxDone  uint32 // the highest stream id processed
	goneAway bool
	lastID   uint32
	closed   bool
}

func (s *faultServer) serve(nc net.Conn) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(h2Wait))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(nc, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	c := &faultConn{s: s, nc: nc, fr: http2.NewFramer(nc, nc), streams: map[uint32]string{}, ids: map[uint32]string{}}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.mu.Lock()
	if s.opts.advertise > 0 {
		c.maxCur = s.opts.advertise
		c.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: s.opts.advertise})
	} else {
		c.fr.WriteSettings()
	}
	c.mu.Unlock()
	done := make(chan struct{})
	defer close(done)
	go c.answerer(done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		c.mu.Lock()
		stop := c.handle(f)
		c.mu.Unlock()
		if stop {
			return
		}
	}
}

// handle handles one frame from the client, under c.mu. It reports
// whether to stop reading.
func (c *faultConn) handle(f http2.Frame) bool {
	o := c.s.opts
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		id := f.StreamID
		if c.goneAway && id > c.lastID {
			return false // not processed, as the GOAWAY said
		}
		limit := o.limit
		if o.flapEvery > 0 {
			limit = int(c.maxCur)
		}
		if limit > 0 && c.active >= limit {
			code := o.resetCode
			if o.flapEvery > 0 {
				code = http2.ErrCodeRefusedStream
			}
			c.s.resets.Add(1)
			c.fr.WriteRSTStream(id, code)
			return false
		}
		c.active++
		c.maxSeen = max(c.maxSeen, id)
		c.streams[id] = strings.TrimPrefix(f.PseudoValue("path"), "/r/")
		if f.StreamEnded() {
			c.complete(id)
			c.closeIfDone()
		}
	case *http2.DataFrame:
		if n := f.Length; n > 0 {
			c.fr.WriteWindowUpdate(0, n)
			if !f.StreamEnded() {
				c.fr.WriteWindowUpdate(f.StreamID, n)
			}
		}
		if _, ok := c.streams[f.StreamID]; ok && f.StreamEnded() {
			c.complete(f.StreamID)
			c.closeIfDone()
		}
	case *http2.SettingsFrame:
		if !f.IsAck() {
			c.fr.WriteSettingsAck()
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			c.s.pings.Add(1)
			if !o.noPingAck {
				c.fr.WritePing(true, f.Data)
			}
		}
	case *http2.RSTStreamFrame:
		if _, ok := c.streams[f.StreamID]; ok {
			delete(c.streams, f.StreamID)
			c.active--
		}
	case *http2.GoAwayFrame:
		return true
	}
	return c.closed
}

// complete takes on request id, read in full, under c.mu.
func (c *faultConn) complete(id uint32) {
	o := c.s.opts
	name := c.streams[id]
	delete(c.streams, id)
	c.s.mu.Lock()
	c.s.processed[name]++
	c.s.mu.Unlock()
	c.ids[id] = name
	c.maxDone = max(c.maxDone, id)
	c.pending = append(c.pending, id)
	c.nReq++
	if o.goAwayEvery == 0 || c.nReq != o.goAwayEvery {
		return
	}
	// The last stream id is the highest opened so far: the requests
	// up to it whose body is still coming are processed too.
	c.goneAway, c.lastID = true, c.maxSeen
	if o.closeAtGoAway {
		// Closing at once: the requests whose body is still coming
		// will never be processed: the last stream id is the highest
		// one processed.
		c.lastID = c.maxDone
	}
	c.s.goAways.Add(1)
	if !o.answerThenClose {
		c.fr.WriteGoAway(c.lastID, o.goAwayCode, nil)
	}
	if o.closeAtGoAway {
		c.close()
	}
}

// closeIfDone, with answerThenClose, answers everything up to the last
// stream id once it is all in, then sends GOAWAY and closes at once, under
// c.mu.
func (c *faultConn) closeIfDone() {
	if !c.s.opts.answerThenClose || !c.goneAway || c.closed {
		return
	}
	for id := range c.streams {
		if id <= c.lastID {
			return // a body still coming
		}
	}
	c.answerPending()
	c.fr.WriteGoAway(c.lastID, c.s.opts.goAwayCode, nil)
	c.close()
}

// answerer sends the pending answers every answerEvery.
func (c *faultConn) answerer(done <-chan struct{}) {
	tick := time.NewTicker(c.s.opts.answerEvery)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		c.mu.Lock()
		if !c.closed && !(c.s.opts.answerThenClose && c.goneAway) {
			c.answerPending()
			if c.goneAway && c.active == 0 {
				c.close() // every stream up to the last one answered
			}
		}
		c.mu.Unlock()
	}
}

// answerPending answers the requests taken on, under c.mu.
func (c *faultConn) answerPending() {
	o := c.s.opts
	for len(c.pending) > 0 && !c.closed {
		id := c.pending[0]
		c.pending = c.pending[1:]
		name := c.ids[id]
		delete(c.ids, id)
		var block strings.Builder
		enc := hpack.NewEncoder(&block)
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		enc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(name))})
		// Counted before it leaves: the client may have it, and the test
		// count, before WriteData returns.
		c.s.mu.Lock()
		c.s.answered[name]++
		c.s.mu.Unlock()
		c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: []byte(block.String()), EndHeaders: true})
		if err := c.fr.WriteData(id, true, []byte(name)); err != nil {
			c.close()
			return
		}
		c.active--
		c.nAns++
		if o.flapEvery > 0 && c.nAns%o.flapEvery == 0 {
			if c.maxCur == 1 {
				c.maxCur = 1000
			} else {
				c.maxCur = 1
			}
			c.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.maxCur})
		}
		if o.closeEvery > 0 && c.nAns == o.closeEvery {
			c.close()
		}
	}
}

// close closes the connection, under c.mu, without reading what the client
// sent meanwhile: the client's next writes meet a reset. It first lets the
// answers written leave (the kernel drops what it still holds at a reset),
// as a server that answered does.
func (c *faultConn) close() {
	c.closed = true
	time.Sleep(20 * time.Millisecond)
	c.nc.Close()
}

// faultClient is an HTTP/2 client under test: this package's h2Transport,
// or net/http's.
type faultClient struct {
	name string
	make func(t *testing.T, s *faultServer, pingAfter, pingTimeout time.Duration) http.RoundTripper
}

var faultClients = []faultClient{
	{"h2Transport", func(t *testing.T, s *faultServer, pingAfter, pingTimeout time.Duration) http.RoundTripper {
		d := &h2Dialer{cfg: s.certs, batch: true}
		tr := &h2Transport{dial: d.dial, pingAfter: pingAfter, pingTimeout: pingTimeout}
		t.Cleanup(tr.CloseIdleConnections)
		return tr
	}},
	{"net/http", func(t *testing.T, s *faultServer, pingAfter, pingTimeout time.Duration) http.RoundTripper {
		d := &h2Dialer{cfg: s.certs}
		tr := stdHTTP2Transport(d.dial)
		tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: pingAfter, PingTimeout: pingTimeout}
		t.Cleanup(tr.CloseIdleConnections)
		return tr
	}},
}

// faultCase is a misbehaving server and what its clients may see.
type faultCase struct {
	name string
	opts faultOpts
	// lossy: the server loses requests it processed (it closes without
	// answering them), so those may fail; and with a TCP close without
	// GOAWAY, requests written but never read fail too, as a client
	// cannot tell them from processed ones.
	lossy bool
	// unknowable: requests the server never read fail too, as a client
	// cannot tell them from processed ones (a TCP close without GOAWAY;
	// requests below a GOAWAY's last stream whose body never came).
	unknowable bool
	pingAfter  time.Duration
	check      func(s *faultServer, report func(string, ...any))
	requests   int
	concurrent int
}

var faultCases = []faultCase{
	{name: "GOAWAY every 10 requests", opts: faultOpts{goAwayEvery: 10},
		check: func(s *faultServer, report func(string, ...any)) {
			wantAtLeast(report, "GOAWAYs", s.goAways.Load(), 10)
		}},
	{name: "GOAWAY every 10 requests, 4 streams at once", opts: faultOpts{goAwayEvery: 10, advertise: 4},
		// Requests wait for a stream slot when the GOAWAY comes.
		check: func(s *faultServer, report func(string, ...any)) {
			wantAtLeast(report, "GOAWAYs", s.goAways.Load(), 10)
		}},
	{name: "answers, GOAWAY, close unread", opts: faultOpts{goAwayEvery: 25, answerEvery: 5 * time.Millisecond, answerThenClose: true},
		check: func(s *faultServer, report func(string, ...any)) { wantAtLeast(report, "GOAWAYs", s.goAways.Load(), 5) }},
	{name: "GOAWAY ENHANCE_YOUR_CALM then close", opts: faultOpts{goAwayEvery: 20, goAwayCode: http2.ErrCodeEnhanceYourCalm, answerEvery: 5 * time.Millisecond, closeAtGoAway: true}, lossy: true, unknowable: true,
		check: func(s *faultServer, report func(string, ...any)) { wantAtLeast(report, "GOAWAYs", s.goAways.Load(), 5) }},
	{name: "TCP close every 50 answers", opts: faultOpts{closeEvery: 50}, lossy: true, unknowable: true,
		check: func(s *faultServer, report func(string, ...any)) {
			wantAtLeast(report, "connections", s.conns.Load(), 5)
		}},
	{name: "no PING answer while answering", opts: faultOpts{noPingAck: true, answerEvery: 100 * time.Millisecond}, pingAfter: 30 * time.Millisecond,
		requests: 300,
		check: func(s *faultServer, report func(string, ...any)) {
			wantAtLeast(report, "PINGs", s.pings.Load(), 2)
			if n := s.conns.Load(); n != 1 {
				report("%d connections, want 1: a busy connection was dropped", n)
			}
		}},
	{name: "excess streams reset with PROTOCOL_ERROR", opts: faultOpts{limit: 8, resetCode: http2.ErrCodeProtocol},
		check: func(s *faultServer, report func(string, ...any)) { wantAtLeast(report, "resets", s.resets.Load(), 10) }},
	{name: "excess streams reset with REFUSED_STREAM", opts: faultOpts{limit: 8, resetCode: http2.ErrCodeRefusedStream},
		check: func(s *faultServer, report func(string, ...any)) { wantAtLeast(report, "resets", s.resets.Load(), 10) }},
	{name: "MAX_CONCURRENT_STREAMS flapping 1-1000", opts: faultOpts{advertise: 1, flapEvery: 20},
		check: func(s *faultServer, report func(string, ...any)) { wantAtLeast(report, "resets", s.resets.Load(), 1) }},
}

func wantAtLeast(report func(string, ...any), what string, got int32, want int32) {
	if got < want {
		report("%d %s, want at least %d: the fault did not happen", got, what, want)
	}
}

// TestH2Faults runs the same misbehaving servers against h2Transport and
// net/http's HTTP/2 client, many concurrent requests each, and counts:
// every answer the server sent reaches its request, once; no request is
// processed twice; a request fails only when the server lost it (processed
// and never answered, or, after a TCP close without GOAWAY, unknowable).
// net/http's failures are logged, not failed: they are what the comparison
// reports (go test -run TestH2Faults -v).
func TestH2Faults(t *testing.T) {
	for _, fc := range faultCases {
		for _, cl := range faultClients {
			t.Run(fc.name+"/"+cl.name, func(t *testing.T) {
				var problems []string
				more := 0
				report := func(format string, args ...any) {
					if len(problems) < 6 {
						problems = append(problems, fmt.Sprintf(format, args...))
					} else {
						more++
					}
				}
				runFaultCase(t, fc, cl, report)
				if len(problems) == 0 {
					return
				}
				if more > 0 {
					problems = append(problems, fmt.Sprintf("(and %d more)", more))
				}
				if cl.name == "h2Transport" {
					t.Errorf("%s", strings.Join(problems, "\n"))
				} else {
					t.Logf("FAILS: %s", strings.Join(problems, "; "))
				}
			})
		}
	}
}

func runFaultCase(t *testing.T, fc faultCase, cl faultClient, report func(string, ...any)) {
	s := newFaultServer(t, fc.opts)
	pingAfter, pingTimeout := fc.pingAfter, 300*time.Millisecond
	rt := cl.make(t, s, pingAfter, pingTimeout)
	requests, concurrent := fc.requests, fc.concurrent
	if requests == 0 {
		requests = 600
	}
	if concurrent == 0 {
		concurrent = 32
	}
	type result struct {
		body string
		err  error
	}
	results := make([]result, requests)
	var next atomic.Int32
	var wg sync.WaitGroup
	pad := strings.Repeat("p", 200) // about a push's size
	for range concurrent {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, body, err := h2Do(ctx, rt, http.MethodPost, fmt.Sprintf("%s/r/%d", s.url, i), nil, []byte(pad))
				cancel()
				results[i] = result{string(body), err}
			}
		})
	}
	wg.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	var ok, lost, unread, failed int
	for i, r := range results {
		id := strconv.Itoa(i)
		switch p, a := s.processed[id], s.answered[id]; {
		case p > 1:
			report("request %d processed %d times", i, p)
		case r.err == nil && r.body != id:
			report("request %d answered %q", i, r.body)
		case r.err == nil && a != 1:
			report("request %d answered though the server sent %d answers", i, a)
		case r.err == nil:
			ok++
		case a > 0:
			report("request %d failed though its answer was sent: %v", i, r.err)
		case p == 1 && fc.lossy:
			lost++ // processed and never answered: truly lost
		case p == 0 && fc.unknowable:
			unread++ // written to a connection the server closed
		default:
			failed++
			report("request %d failed (processed %d times): %v", i, p, r.err)
		}
	}
	t.Logf("%d answered, %d failed wrongly, %d lost by the server, %d written to a closed connection; server: %d connections, %d GOAWAYs, %d resets, %d PINGs",
		ok, failed, lost, unread, s.conns.Load(), s.goAways.Load(), s.resets.Load(), s.pings.Load())
	if fc.check != nil {
		fc.check(s, report)
	}
}

// holdReadsConn holds what its reads return, once armed, until a write on
// it fails: the client's reader is slow, and the answers it has not taken
// yet are in the socket when the write fails.
type holdReadsConn struct {
	net.Conn
	armed   *atomic.Bool
	release chan struct{}
	once    *sync.Once
}

func (c holdReadsConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.armed.Load() {
		<-c.release
	}
	return n, err
}

func (c holdReadsConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.once.Do(func() { close(c.release) })
	}
	return n, err
}

// TestH2AnswersBeforeAFailedWrite has a server answer five requests, send
// GOAWAY and reset the connection while the client's reader has not taken
// them yet; the client's next write fails. The five get their answers, none
// is sent twice, and the request whose write failed goes over a new
// connection.
func TestH2AnswersBeforeAFailedWrite(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			var mu sync.Mutex
			seen := map[string]int{}
			closed := make(chan struct{})
			url, d := rawH2ServerConn(t, func(tc *tls.Conn, fr *http2.Framer, conn int) {
				fr.WriteSettings()
				var ids []uint32
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					var id uint32
					switch f := f.(type) {
					case *http2.MetaHeadersFrame:
						mu.Lock()
						seen[f.PseudoValue("path")]++
						mu.Unlock()
						if f.StreamEnded() {
							id = f.StreamID
						}
					case *http2.DataFrame:
						if f.StreamEnded() {
							id = f.StreamID
						}
					}
					if id == 0 {
						continue
					}
					if conn > 1 {
						h2Answer(fr, id, "second connection")
						continue
					}
					// The warm-up, then five at once.
					if ids = append(ids, id); len(ids) != 1 && len(ids) != 6 {
						continue
					}
					for _, id := range ids[max(len(ids)-5, 0):] {
						h2Answer(fr, id, fmt.Sprint(id))
					}
					if len(ids) == 1 {
						continue
					}
					fr.WriteGoAway(id, http2.ErrCodeNo, nil)
					time.Sleep(20 * time.Millisecond) // the frames leave
					tc.NetConn().(*net.TCPConn).SetLinger(0)
					tc.NetConn().Close() // a reset
					close(closed)
					return
				}
			})
			var armed atomic.Bool
			release, once := make(chan struct{}), new(sync.Once)
			dial := func(ctx context.Context, addr string) (net.Conn, error) {
				n := d.dials.Add(1)
				nc, err := (&tls.Dialer{Config: d.cfg}).DialContext(ctx, "tcp", addr)
				if err != nil || n > 1 {
					return nc, err
				}
				tc := nc.(*tls.Conn)
				h := holdReadsConn{Conn: tc, armed: &armed, release: release, once: once}
				if batch {
					return &batchTLSConn{batchConn: newBatchConn(h), tls: tc}, nil
				}
				return h, nil
			}
			tr := &h2Transport{dial: dial}
			defer tr.CloseIdleConnections()
			ctx := h2Ctx(t)
			post := func(path string) (string, error) {
				_, body, err := h2Do(ctx, tr, http.MethodPost, url+path, nil, []byte("x"))
				return string(body), err
			}
			if _, err := post("/warm-up"); err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			type answer struct {
				body string
				err  error
			}
			answers := make(chan answer, 5)
			for i := range 5 {
				go func() {
					body, err := post(fmt.Sprintf("/r/%d", i))
					answers <- answer{body, err}
				}()
			}
			<-closed
			// The server has reset the connection: this write fails (at
			// once, or in the batchConn's writer), then the reader takes
			// what was in the socket.
			var last answer
			done := make(chan struct{})
			go func() {
				defer close(done)
				last.body, last.err = post("/r/last")
			}()
			for range 5 {
				a := <-answers
				if a.err != nil {
					t.Errorf("an answered request failed: %v", a.err)
				}
			}
			<-done
			if last.err != nil || last.body != "second connection" {
				t.Errorf("the request whose write failed: %q, %v; want it sent again over a new connection", last.body, last.err)
			}
			mu.Lock()
			defer mu.Unlock()
			for path, n := range seen {
				if n != 1 {
					t.Errorf("%s seen %d times by the server", path, n)
				}
			}
		})
	}
}

// gatedConn holds its writes, once gated, until its write deadline is set
// (as batchConn.Close does) or the gate opens.
type gatedConn struct {
	net.Conn
	gated   *atomic.Bool
	entered chan struct{}
	gate    chan struct{}
	once    *sync.Once
}

func (c gatedConn) Write(p []byte) (int, error) {
	if c.gated.Load() {
		c.entered <- struct{}{}
		<-c.gate
	}
	return c.Conn.Write(p)
}

func (c gatedConn) SetWriteDeadline(t time.Time) error {
	c.once.Do(func() { close(c.gate) })
	return c.Conn.SetWriteDeadline(t)
}

// TestH2UnsentRequestsOfALostConnection loses a connection while the
// batchConn's writer is stuck in a system call with one request and two
// more are queued behind it: those two never left, and go over a new
// connection; the one being written may have reached the server, and fails.
func TestH2UnsentRequestsOfALostConnection(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	closeFirst := make(chan struct{})
	url, d := rawH2ServerConn(t, func(tc *tls.Conn, fr *http2.Framer, conn int) {
		fr.WriteSettings()
		if conn == 1 {
			go func() { <-closeFirst; tc.NetConn().Close() }()
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if f, ok := f.(*http2.MetaHeadersFrame); ok {
				mu.Lock()
				seen[f.PseudoValue("path")]++
				mu.Unlock()
				h2Answer(fr, f.StreamID, fmt.Sprint(conn))
			}
		}
	})
	var gated atomic.Bool
	entered, gate := make(chan struct{}, 10), make(chan struct{})
	var first *batchConn
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		n := d.dials.Add(1)
		nc, err := (&tls.Dialer{Config: d.cfg}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		tc := nc.(*tls.Conn)
		var under net.Conn = tc
		if n == 1 {
			under = gatedConn{Conn: tc, gated: &gated, entered: entered, gate: gate, once: new(sync.Once)}
		}
		b := newBatchConn(under)
		if n == 1 {
			first = b
		}
		return &batchTLSConn{batchConn: b, tls: tc}, nil
	}
	tr := &h2Transport{dial: dial}
	defer tr.CloseIdleConnections()
	ctx := h2Ctx(t)
	get := func(path string) (string, error) {
		_, body, err := h2Do(ctx, tr, http.MethodGet, url+path, nil, nil)
		return string(body), err
	}
	if body, err := get("/warm-up"); err != nil || body != "1" {
		t.Fatalf("warm-up: %q, %v", body, err)
	}
	// Everything written so far (the SETTINGS ACK, the warm-up) must have
	// left first: else, on a loaded machine, the write the gate stops may
	// be a late SETTINGS ACK, with /being-written queued behind it.
	waitFor(t, "the first connection's writer to be idle", func() bool {
		first.mu.Lock()
		defer first.mu.Unlock()
		return len(first.queued) == 0 && first.sent == first.accepted.Load()
	})
	gated.Store(true)
	type answer struct {
		body string
		err  error
	}
	answers := make(map[string]chan answer)
	for _, p := range []string{"/being-written", "/queued-1", "/queued-2"} {
		answers[p] = make(chan answer, 1)
		before := first.accepted.Load()
		go func() {
			body, err := get(p)
			answers[p] <- answer{body, err}
		}()
		waitFor(t, p+" to be queued", func() bool { return first.accepted.Load() > before })
		if p == "/being-written" {
			<-entered // the writer holds it, stuck in its system call
		}
	}
	close(closeFirst) // the server closes: the reader sees the connection end
	a := <-answers["/being-written"]
	if a.err == nil || errors.Is(a.err, errH2NotProcessed) {
		t.Errorf("the request being written: %q, %v; want it failed, as maybe processed", a.body, a.err)
	}
	for _, p := range []string{"/queued-1", "/queued-2"} {
		if a := <-answers[p]; a.err != nil || a.body != "2" {
			t.Errorf("%s: %q, %v; want it sent again over the second connection", p, a.body, a.err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for path, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times by the server", path, n)
		}
	}
}
