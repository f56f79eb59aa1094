package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Wait bounds every wait of these tests: they run with -race on busy
// machines, and must fail rather than hang.
const h2Wait = 20 * time.Second

// h2Dialer dials a TLS server offering h2, as dialHTTP2 does, and counts
// its dials.
type h2Dialer struct {
	cfg    *tls.Config
	batch  bool // wrap the connection in a batchConn, as in production
	dials  atomic.Int32
	writes atomic.Int64 // by the batchConns' writers: system calls
}

// countingConn counts the writes to a connection.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

func newH2Dialer(srv *httptest.Server, batch bool) *h2Dialer {
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{http2.NextProtoTLS}
	return &h2Dialer{cfg: cfg, batch: batch}
}

func (d *h2Dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	d.dials.Add(1)
	td := tls.Dialer{Config: d.cfg}
	c, err := td.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	if p := tc.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
		tc.Close()
		return nil, fmt.Errorf("%s does not speak HTTP/2 (ALPN %q)", addr, p)
	}
	if d.batch {
		return &batchTLSConn{batchConn: newBatchConn(countingConn{tc, &d.writes}), tls: tc}, nil
	}
	return tc, nil
}

// newH2Server starts a Go HTTP/2 server over TLS on loopback.
func newH2Server(t testing.TB, h http.Handler, cfg *http.HTTP2Config, connState func(net.Conn, http.ConnState)) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.Config.HTTP2 = cfg
	srv.Config.ConnState = connState
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// newH2Client returns an h2Transport to srv and its dialer.
func newH2Client(t testing.TB, srv *httptest.Server, batch bool) (*h2Transport, *h2Dialer) {
	d := newH2Dialer(srv, batch)
	tr := &h2Transport{dial: d.dial}
	t.Cleanup(tr.CloseIdleConnections)
	return tr, d
}

// h2Do sends a request through rt and returns the answer and its body.
func h2Do(ctx context.Context, rt http.RoundTripper, method, url string, header http.Header, body []byte) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, nil, err
	}
	for k, vv := range header {
		req.Header[k] = vv
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	return resp, got, err
}

func h2Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), h2Wait)
	t.Cleanup(cancel)
	return ctx
}

// h2Echo answers with what it got: method, path, headers (as X-Echo-*) and
// the body. ?status= sets the status.
func h2Echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set("X-Method", r.Method)
	h.Set("X-Path", r.URL.RequestURI())
	h.Set("X-Host", r.Host)
	h.Set("X-Proto", r.Proto)
	h.Set("X-Content-Length", strconv.FormatInt(r.ContentLength, 10))
	for k, vv := range r.Header {
		h["X-Echo-"+k] = vv
	}
	status := http.StatusOK
	if s := r.URL.Query().Get("status"); s != "" {
		status, _ = strconv.Atoi(s)
	}
	w.WriteHeader(status)
	w.Write(body)
}

func TestH2RoundTrip(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo/", h2Echo)
	mux.HandleFunc("/sized", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1234")
		if r.Method != http.MethodHead {
			w.Write(make([]byte, 1234))
		}
	})
	mux.HandleFunc("/hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Trailer", "X-Trailer")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("final"))
		w.Header().Set("X-Trailer", "ignored")
	})
	big := strings.Repeat("a", 40<<10) // HPACK: > 16 KiB, so CONTINUATION frames
	cases := []struct {
		name       string
		method     string
		path       string
		header     http.Header
		body       []byte
		wantStatus string
		wantHeader map[string]string // "" means absent
		wantBody   string
		wantLength int64
	}{{
		name: "GET", method: http.MethodGet, path: "/echo/a?b=c&d=%2F",
		wantStatus: "200 OK",
		wantHeader: map[string]string{"X-Method": "GET", "X-Path": "/echo/a?b=c&d=%2F", "X-Proto": "HTTP/2.0", "X-Content-Length": "0"},
	}, {
		name: "POST with headers and body", method: http.MethodPost, path: "/echo/3/device/abc",
		header: http.Header{
			"Apns-Topic":    {"com.example.app"},
			"Authorization": {"bearer xyz"},
			"X-Multi":       {"one", "two"},
			"lower-case":    {"kept"},
		},
		body:       []byte(`{"aps":{"alert":"hello"}}`),
		wantStatus: "200 OK",
		wantHeader: map[string]string{
			"X-Method": "POST", "X-Content-Length": "25", "X-Echo-Apns-Topic": "com.example.app",
			"X-Echo-Authorization": "bearer xyz", "X-Echo-Lower-Case": "kept",
		},
		wantBody: `{"aps":{"alert":"hello"}}`, wantLength: 25,
	}, {
		// The Go server refuses connection-specific headers: sent, they
		// would fail the request.
		name: "connection-specific headers dropped", method: http.MethodPost, path: "/echo/x",
		header: http.Header{
			"Connection": {"keep-alive"}, "Keep-Alive": {"5"}, "Proxy-Connection": {"x"},
			"Transfer-Encoding": {"chunked"}, "Upgrade": {"h2c"}, "Te": {"gzip"}, "Host": {"elsewhere"},
		},
		body:       []byte("x"),
		wantStatus: "200 OK",
		wantHeader: map[string]string{"X-Echo-Te": "", "X-Echo-Connection": "", "X-Echo-Upgrade": ""},
		wantBody:   "x", wantLength: 1,
	}, {
		name: "te trailers kept", method: http.MethodGet, path: "/echo/te",
		header:     http.Header{"Te": {"trailers"}},
		wantStatus: "200 OK",
		wantHeader: map[string]string{"X-Echo-Te": "trailers"},
	}, {
		name: "PUT without body sends content-length 0", method: http.MethodPut, path: "/echo/put",
		wantStatus: "200 OK",
		wantHeader: map[string]string{"X-Content-Length": "0"},
	}, {
		name: "header block in CONTINUATION frames, both ways", method: http.MethodGet, path: "/echo/big",
		header:     http.Header{"X-Big": {big}},
		wantStatus: "200 OK",
		wantHeader: map[string]string{"X-Echo-X-Big": big},
	}, {
		name: "error status with body", method: http.MethodPost, path: "/echo/gone?status=410",
		body:       []byte(`{"reason":"Unregistered"}`),
		wantStatus: "410 Gone",
		wantBody:   `{"reason":"Unregistered"}`, wantLength: 25,
	}, {
		name: "HEAD", method: http.MethodHead, path: "/sized",
		wantStatus: "200 OK", wantLength: 1234,
	}, {
		name: "GET sized", method: http.MethodGet, path: "/sized",
		wantStatus: "200 OK", wantBody: string(make([]byte, 1234)), wantLength: 1234,
	}, {
		name: "1xx ignored, trailers ignored", method: http.MethodGet, path: "/hints",
		wantStatus: "200 OK", wantBody: "final", wantLength: 5,
	}}
	servers := []struct {
		name string
		cfg  *http.HTTP2Config
	}{
		{"default server", nil},
		// The server's HEADER_TABLE_SIZE shrinks our encoder's table, and
		// it takes frames up to 1 MiB.
		{"small header table, big frames", &http.HTTP2Config{MaxDecoderHeaderTableSize: 256, MaxReadFrameSize: 1 << 20}},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			srv := newH2Server(t, mux, s.cfg, nil)
			tr, d := newH2Client(t, srv, false)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					req, err := http.NewRequestWithContext(h2Ctx(t), tc.method, srv.URL+tc.path, bytes.NewReader(tc.body))
					if err != nil {
						t.Fatal(err)
					}
					if tc.body == nil {
						req.Body, req.ContentLength = nil, 0
					}
					for k, vv := range tc.header {
						req.Header[k] = vv
					}
					resp, err := tr.RoundTrip(req)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.Status != tc.wantStatus || resp.Proto != "HTTP/2.0" || resp.ProtoMajor != 2 || resp.Request != req || resp.TLS == nil {
						t.Errorf("status %q proto %q/%d request %p TLS %v, want %q HTTP/2.0/2 %p",
							resp.Status, resp.Proto, resp.ProtoMajor, resp.Request, resp.TLS != nil, tc.wantStatus, req)
					}
					for k, want := range tc.wantHeader {
						if got := resp.Header.Get(k); got != want {
							t.Errorf("header %s = %.40q, want %.40q", k, got, want)
						}
					}
					if k := "X-Echo-X-Multi"; tc.header["X-Multi"] != nil && strings.Join(resp.Header[k], ",") != "one,two" {
						t.Errorf("header %s = %q, want [one two]", k, resp.Header[k])
					}
					if string(body) != tc.wantBody || resp.ContentLength != tc.wantLength {
						t.Errorf("body %.40q (length %d), want %.40q (%d)", body, resp.ContentLength, tc.wantBody, tc.wantLength)
					}
				})
			}
			if n := d.dials.Load(); n != 1 {
				t.Errorf("%d dials, want 1", n)
			}
		})
	}
}

func TestH2RejectsBadRequests(t *testing.T) {
	tr := &h2Transport{dial: func(context.Context, string) (net.Conn, error) {
		return nil, errors.New("no dial expected")
	}}
	cases := []struct {
		name, url, want string
		header          http.Header
	}{
		{"http scheme", "http://example.com/", `scheme "http"`, nil},
		{"bad header name", "https://example.com/", "invalid header field name", http.Header{"Bad Name": {"x"}}},
		{"bad header value, not shown", "https://example.com/", `invalid value of header field "X-Token"`, http.Header{"X-Token": {"secret\nvalue"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			req.Header = tc.header
			_, err := tr.RoundTrip(req)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// TestH2Concurrent sends 2000 requests at once over one connection.
func TestH2Concurrent(t *testing.T) {
	srv := newH2Server(t, http.HandlerFunc(h2Echo), nil, nil)
	tr, d := newH2Client(t, srv, true)
	ctx := h2Ctx(t)
	const n = 2000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			want := fmt.Sprintf("push %d", i)
			resp, body, err := h2Do(ctx, tr, http.MethodPost, srv.URL+"/3/device/"+strconv.Itoa(i),
				http.Header{"Apns-Id": {strconv.Itoa(i)}}, []byte(want))
			switch {
			case err != nil:
				errs <- err
			case resp.StatusCode != 200 || string(body) != want || resp.Header.Get("X-Echo-Apns-Id") != strconv.Itoa(i):
				errs <- fmt.Errorf("request %d: status %d body %q id %q", i, resp.StatusCode, body, resp.Header.Get("X-Echo-Apns-Id"))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := d.dials.Load(); got != 1 {
		t.Errorf("%d dials, want 1", got)
	}
}

// TestH2MaxConcurrentStreams sends 50 requests at once to a server that
// takes 2 at a time: those it refuses before its SETTINGS arrive are sent
// again, the others wait for a stream.
func TestH2MaxConcurrentStreams(t *testing.T) {
	var inFlight, most atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		h2Echo(w, r)
	})
	srv := newH2Server(t, h, &http.HTTP2Config{MaxConcurrentStreams: 2}, nil)
	tr, d := newH2Client(t, srv, false)
	ctx := h2Ctx(t)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			want := strconv.Itoa(i)
			resp, body, err := h2Do(ctx, tr, http.MethodPost, srv.URL+"/", nil, []byte(want))
			if err != nil {
				t.Error(err)
			} else if resp.StatusCode != 200 || string(body) != want {
				t.Errorf("status %d body %q, want 200 %q", resp.StatusCode, body, want)
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > 2 {
		t.Errorf("%d requests at once, want at most 2", m)
	}
	if got := d.dials.Load(); got != 1 {
		t.Errorf("%d dials, want 1", got)
	}
}

func TestH2FlowControl(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", h2Echo)
	mux.HandleFunc("/size/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		w.Write(make([]byte, n))
	})
	servers := []struct {
		name string
		cfg  *http.HTTP2Config
	}{
		{"default server", nil},
		// Windows well below the request body: many WINDOW_UPDATEs.
		{"server with small windows", &http.HTTP2Config{MaxReceiveBufferPerStream: 8 << 10, MaxReceiveBufferPerConnection: 64 << 10}},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			srv := newH2Server(t, mux, s.cfg, nil)
			tr, d := newH2Client(t, srv, false)
			ctx := h2Ctx(t)

			// 300 KB up, twice at once, as the first requests: their
			// DATA waits for the server's SETTINGS, then its
			// WINDOW_UPDATEs.
			var wg sync.WaitGroup
			for range 2 {
				wg.Go(func() {
					up := make([]byte, 300_000)
					rand.Read(up)
					resp, body, err := h2Do(ctx, tr, http.MethodPost, srv.URL+"/echo", nil, up)
					if err != nil {
						t.Error(err)
					} else if resp.StatusCode != 200 || !bytes.Equal(body, up) {
						t.Errorf("status %d, %d bytes echoed, want 200 and the %d sent", resp.StatusCode, len(body), len(up))
					}
				})
			}
			wg.Wait()

			// 10 × 500 KB down: more than the connection window, which must
			// be credited back; each above half a stream window.
			for range 10 {
				_, body, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/size/500000", nil, nil)
				if err != nil || len(body) != 500_000 {
					t.Fatalf("got %d bytes, %v; want 500000", len(body), err)
				}
			}
			// 2 MB down: beyond the bound, after a stream WINDOW_UPDATE.
			_, _, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/size/2000000", nil, nil)
			if err == nil || !strings.Contains(err.Error(), "response body larger than") || !strings.Contains(err.Error(), srv.Listener.Addr().String()) {
				t.Errorf("2 MB answer: error %v, want one saying it is too large, naming the host", err)
			}
			// The connection still serves.
			if _, body, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/size/10", nil, nil); err != nil || len(body) != 10 {
				t.Errorf("after the reset: %d bytes, %v", len(body), err)
			}
			if got := d.dials.Load(); got != 1 {
				t.Errorf("%d dials, want 1", got)
			}
		})
	}
}

// returnedBody is a request body that records a Read or Close after the
// RoundTrip it was sent with returned.
type returnedBody struct {
	*bytes.Reader
	returned, late atomic.Bool
}

func (b *returnedBody) Read(p []byte) (int, error) {
	if b.returned.Load() {
		b.late.Store(true)
	}
	return b.Reader.Read(p)
}

func (b *returnedBody) Close() error {
	if b.returned.Load() {
		b.late.Store(true)
	}
	return nil
}

// TestH2DoneWithBodyOnReturn holds h2Transport to what the providers'
// pooled bodies rely on: once RoundTrip returns, it no longer touches the
// request's body, whether the server answered before taking it all, under
// small windows, or after reading it.
func TestH2DoneWithBodyOnReturn(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", h2Echo)
	mux.HandleFunc("/early", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest) // before reading the body
	})
	srv := newH2Server(t, mux, &http.HTTP2Config{MaxReceiveBufferPerStream: 8 << 10, MaxReceiveBufferPerConnection: 64 << 10}, nil)
	tr, _ := newH2Client(t, srv, true)
	ctx := h2Ctx(t)
	for _, tc := range []struct {
		path string
		size int
	}{{"/echo", 800}, {"/echo", 300_000}, {"/early", 300_000}} {
		sent := make([]byte, tc.size)
		rand.Read(sent)
		body := &returnedBody{Reader: bytes.NewReader(bytes.Clone(sent))}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+tc.path, body)
		resp, err := tr.RoundTrip(req)
		body.returned.Store(true)
		if err != nil {
			t.Fatalf("%s, %d bytes: %v", tc.path, tc.size, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			t.Errorf("%s, %d bytes: reading the answer: %v", tc.path, tc.size, err)
		case tc.path == "/echo" && !bytes.Equal(got, sent):
			t.Errorf("%s: %d bytes echoed, want the %d sent", tc.path, len(got), tc.size)
		case body.late.Load():
			t.Errorf("%s, %d bytes: the body was read or closed after RoundTrip returned", tc.path, tc.size)
		}
	}
}

// TestH2Context ends requests' contexts while they wait for the answer or
// a stream; the connection keeps serving.
func TestH2Context(t *testing.T) {
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	var serverCanceled atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-r.Context().Done():
			serverCanceled.Add(1) // our RST_STREAM arrived
		case <-release:
		case <-time.After(h2Wait):
		}
	})
	mux.HandleFunc("/late", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond) // then answers anyway
		w.Header().Set("X-Late", strings.Repeat("l", 100))
		w.Write([]byte("too late"))
	})
	mux.HandleFunc("/ok", h2Echo)
	srv := newH2Server(t, mux, &http.HTTP2Config{MaxConcurrentStreams: 1}, nil)
	tr, d := newH2Client(t, srv, false)
	ok := func() {
		t.Helper()
		if resp, _, err := h2Do(h2Ctx(t), tr, http.MethodGet, srv.URL+"/ok", nil, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("next request: %v", err)
		}
	}
	ok() // the server's SETTINGS (1 stream) are in

	t.Run("deadline waiting for the answer", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, _, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/block", nil, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want DeadlineExceeded", err)
		}
		<-entered
		waitFor(t, "the server to see the stream reset", func() bool { return serverCanceled.Load() == 1 })
		ok()
	})
	t.Run("canceled waiting for the answer", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-entered; cancel() }()
		_, _, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/block", nil, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want Canceled", err)
		}
		waitFor(t, "the server to see the stream reset", func() bool { return serverCanceled.Load() == 2 })
		ok()
	})
	t.Run("deadline waiting for a stream", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			_, _, err := h2Do(h2Ctx(t), tr, http.MethodGet, srv.URL+"/block", nil, nil)
			done <- err
		}()
		<-entered // holds the one stream
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, _, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/ok", nil, nil)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a stream") {
			t.Errorf("error %v, want DeadlineExceeded waiting for a stream", err)
		}
		release <- struct{}{}
		if err := <-done; err != nil {
			t.Errorf("the request holding the stream: %v", err)
		}
		ok()
	})
	t.Run("answer after the deadline discarded", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, _, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/late", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v, want DeadlineExceeded", err)
		}
		time.Sleep(400 * time.Millisecond)
		ok()
		ok()
	})
	if got := d.dials.Load(); got != 1 {
		t.Errorf("%d dials, want 1", got)
	}
}

// waitFor polls cond until it holds, or fails the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(h2Wait); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestH2ServerClosesConnections drops the connections under requests in
// flight: they fail, and later ones go over a new connection.
func TestH2ServerClosesConnections(t *testing.T) {
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	defer close(release)
	mux := http.NewServeMux()
	mux.HandleFunc("/block/", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/ok", h2Echo)
	srv := newH2Server(t, mux, nil, nil)
	tr, d := newH2Client(t, srv, true)
	ctx := h2Ctx(t)

	errs := make(chan error, 10)
	for range 10 {
		go func() {
			_, _, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/block/3/device/secret-token", nil, nil)
			errs <- err
		}()
	}
	for range 10 {
		<-entered
	}
	srv.CloseClientConnections()
	for range 10 {
		err := <-errs
		if err == nil || !strings.Contains(err.Error(), srv.Listener.Addr().String()) || strings.Contains(err.Error(), "secret-token") {
			t.Errorf("error %v, want one naming the host, not the path", err)
		}
	}
	if resp, _, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/ok", nil, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the connection died: %v", err)
	}
	if got := d.dials.Load(); got != 2 {
		t.Errorf("%d dials, want 2", got)
	}
}

// TestH2GracefulShutdown shuts the server down under requests in flight:
// its GOAWAY lets them finish, and the next request fails to connect
// rather than hang.
func TestH2GracefulShutdown(t *testing.T) {
	entered := make(chan struct{}, 5)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		w.Write([]byte("done"))
	})
	srv := newH2Server(t, h, nil, nil)
	tr, _ := newH2Client(t, srv, false)
	ctx := h2Ctx(t)

	errs := make(chan error, 5)
	for range 5 {
		go func() {
			_, body, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/", nil, nil)
			if err == nil && string(body) != "done" {
				err = fmt.Errorf("body %q", body)
			}
			errs <- err
		}()
	}
	for range 5 {
		<-entered
	}
	shut := make(chan error, 1)
	go func() { shut <- srv.Config.Shutdown(ctx) }()
	for range 5 {
		if err := <-errs; err != nil {
			t.Errorf("request in flight: %v", err)
		}
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if _, _, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/", nil, nil); err == nil || !strings.Contains(err.Error(), "connecting") {
		t.Errorf("after shutdown: error %v, want a failure to connect", err)
	}
}

// TestH2IdleConnections closes connections without requests: after
// idleTimeout, or at CloseIdleConnections.
func TestH2IdleConnections(t *testing.T) {
	var closed atomic.Int32
	srv := newH2Server(t, http.HandlerFunc(h2Echo), nil, func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	})
	ctx := h2Ctx(t)
	get := func(tr *h2Transport) {
		t.Helper()
		if _, _, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/", nil, nil); err != nil {
			t.Fatal(err)
		}
	}

	tr, d := newH2Client(t, srv, true)
	tr.idleTimeout = 100 * time.Millisecond
	get(tr)
	waitFor(t, "the idle connection to close", func() bool { return closed.Load() == 1 })
	get(tr)
	if got := d.dials.Load(); got != 2 {
		t.Errorf("%d dials, want 2", got)
	}
	tr.CloseIdleConnections()
	waitFor(t, "CloseIdleConnections to close the connection", func() bool { return closed.Load() == 2 })

	tr, d = newH2Client(t, srv, false) // no idle timeout
	get(tr)
	time.Sleep(200 * time.Millisecond)
	get(tr)
	if got := d.dials.Load(); got != 1 {
		t.Errorf("without idle timeout: %d dials, want 1", got)
	}
	tr.CloseIdleConnections()
	waitFor(t, "CloseIdleConnections to close the connection", func() bool { return closed.Load() == 3 })
}

// TestH2Pings answers the server's PINGs, and ours are answered, under a
// slow request: the connection stays.
func TestH2Pings(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(500 * time.Millisecond)
		w.Write([]byte("slow"))
	})
	srv := newH2Server(t, h, &http.HTTP2Config{SendPingTimeout: 50 * time.Millisecond, PingTimeout: 200 * time.Millisecond}, nil)
	tr, d := newH2Client(t, srv, false)
	tr.pingAfter, tr.pingTimeout = 50*time.Millisecond, 200*time.Millisecond
	for range 2 {
		if _, body, err := h2Do(h2Ctx(t), tr, http.MethodGet, srv.URL+"/", nil, nil); err != nil || string(body) != "slow" {
			t.Fatalf("body %q, %v", body, err)
		}
	}
	if got := d.dials.Load(); got != 1 {
		t.Errorf("%d dials, want 1", got)
	}
}

// TestH2StreamIDsExhausted makes a connection near its last stream id: it
// finishes its requests, and the next one goes over a new connection.
func TestH2StreamIDsExhausted(t *testing.T) {
	srv := newH2Server(t, http.HandlerFunc(h2Echo), nil, nil)
	tr, d := newH2Client(t, srv, false)
	ctx := h2Ctx(t)
	get := func() {
		t.Helper()
		if resp, _, err := h2Do(ctx, tr, http.MethodGet, srv.URL+"/", nil, nil); err != nil || resp.StatusCode != 200 {
			t.Fatal(err)
		}
	}
	get()
	tr.mu.Lock()
	c := tr.conns[srv.Listener.Addr().String()]
	tr.mu.Unlock()
	c.wmu.Lock()
	c.mu.Lock()
	c.nextID = h2MaxStreamID - 2
	c.mu.Unlock()
	c.wmu.Unlock()
	get() // stream 2^31-3
	get() // stream 2^31-1, the last
	if got := d.dials.Load(); got != 1 {
		t.Errorf("%d dials, want 1", got)
	}
	get()
	if got := d.dials.Load(); got != 2 {
		t.Errorf("%d dials, want 2", got)
	}
	waitFor(t, "the old connection to close", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.closed
	})
}

// rawH2Server serves HTTP/2 over TLS on loopback with serve, given a
// Framer on each connection (its client preface read, no SETTINGS sent)
// and the connection's number, from 1.
func rawH2Server(t *testing.T, serve func(fr *http2.Framer, conn int)) (url string, d *h2Dialer) {
	t.Helper()
	return rawH2ServerConn(t, func(_ *tls.Conn, fr *http2.Framer, conn int) { serve(fr, conn) })
}

// rawH2ServerConn is rawH2Server with the connection given too.
func rawH2ServerConn(t *testing.T, serve func(tc *tls.Conn, fr *http2.Framer, conn int)) (url string, d *h2Dialer) {
	t.Helper()
	certs := newH2Server(t, http.NotFoundHandler(), nil, nil) // for its certificate
	cfg := certs.TLS.Clone()
	cfg.NextProtos = []string{http2.NextProtoTLS}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(h2Wait))
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
					return
				}
				fr := http2.NewFramer(c, c)
				fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
				serve(c.(*tls.Conn), fr, n)
			})
		}
	})
	return "https://" + ln.Addr().String(), newH2Dialer(certs, false)
}

// h2Answer writes a 200 answer with body on stream id.
func h2Answer(fr *http2.Framer, id uint32, body string) {
	var block bytes.Buffer
	hpack.NewEncoder(&block).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block.Bytes(), EndHeaders: true})
	fr.WriteData(id, true, []byte(body))
}

// TestH2NotProcessed covers what a server refuses: a refused stream or one
// above a GOAWAY's last stream fails saying so, after being sent again.
func TestH2NotProcessed(t *testing.T) {
	t.Run("REFUSED_STREAM", func(t *testing.T) {
		var headers atomic.Int32
		url, d := rawH2Server(t, func(fr *http2.Framer, _ int) {
			fr.WriteSettings()
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					return
				}
				if f, ok := f.(*http2.MetaHeadersFrame); ok {
					headers.Add(1)
					fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
				}
			}
		})
		tr := &h2Transport{dial: d.dial}
		defer tr.CloseIdleConnections()
		// Sent again until the deadline, not a fixed number of times,
		// pausing after the first few: a server refusing everything
		// costs tens of attempts, not a hot loop.
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, _, err := h2Do(ctx, tr, http.MethodPost, url+"/", nil, []byte("x"))
		if !errors.Is(err, errH2NotProcessed) || !strings.Contains(err.Error(), "refused") || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v, want a refused stream, not processed, given up at the deadline", err)
		}
		if got := headers.Load(); got <= h2RapidRetries || got > 100 {
			t.Errorf("sent %d times, want more than %d and a pause between the later ones", got, h2RapidRetries)
		}
	})
	t.Run("GOAWAY", func(t *testing.T) {
		// The first connection takes two requests, says GOAWAY with the
		// first as its last, answers it and closes; the second request
		// goes again, over the second connection.
		url, d := rawH2Server(t, func(fr *http2.Framer, conn int) {
			fr.WriteSettings()
			var ids []uint32
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					return
				}
				f2, ok := f.(*http2.MetaHeadersFrame)
				if !ok {
					continue
				}
				if conn > 1 {
					h2Answer(fr, f2.StreamID, "second connection")
					continue
				}
				if ids = append(ids, f2.StreamID); len(ids) == 2 {
					fr.WriteGoAway(ids[0], http2.ErrCodeNo, nil)
					h2Answer(fr, ids[0], "first connection")
					return
				}
			}
		})
		tr := &h2Transport{dial: d.dial}
		defer tr.CloseIdleConnections()
		ctx := h2Ctx(t)
		bodies := make(chan string, 2)
		for range 2 {
			go func() {
				_, body, err := h2Do(ctx, tr, http.MethodGet, url+"/", nil, nil)
				if err != nil {
					t.Error(err)
				}
				bodies <- string(body)
			}()
		}
		got := []string{<-bodies, <-bodies}
		if got[0] == got[1] {
			t.Errorf("answers %q, want one from each connection", got)
		}
		if n := d.dials.Load(); n != 2 {
			t.Errorf("%d dials, want 2", n)
		}
	})
	t.Run("unanswered PING", func(t *testing.T) {
		// A server that reads and never answers: the PING times out and
		// the request fails instead of waiting for its deadline.
		url, d := rawH2Server(t, func(fr *http2.Framer, _ int) {
			fr.WriteSettings()
			for {
				if _, err := fr.ReadFrame(); err != nil {
					return
				}
			}
		})
		tr := &h2Transport{dial: d.dial, pingAfter: 50 * time.Millisecond, pingTimeout: 100 * time.Millisecond}
		defer tr.CloseIdleConnections()
		start := time.Now()
		_, _, err := h2Do(h2Ctx(t), tr, http.MethodGet, url+"/", nil, nil)
		if err == nil || !strings.Contains(err.Error(), "PING") {
			t.Errorf("error %v, want a PING timeout", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("failed after %v", el)
		}
	})
}

// TestH2MalformedAnswers answers a first request wrongly: a malformed
// header block fails that request alone, and the next one goes over the
// same connection; a broken connection (HPACK it cannot decode, a frame for
// a stream never opened) is closed with a GOAWAY, and the next request dials
// again.
func TestH2MalformedAnswers(t *testing.T) {
	type answer func(fr *http2.Framer, id uint32)
	headers := func(endStream bool, fields ...string) answer {
		return func(fr *http2.Framer, id uint32) {
			var block bytes.Buffer
			enc := hpack.NewEncoder(&block)
			for i := 0; i+1 < len(fields); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
			}
			// In frames of at most 16 KiB, our SETTINGS_MAX_FRAME_SIZE.
			b := block.Bytes()
			first := b[:min(len(b), 16<<10)]
			b = b[len(first):]
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(b) == 0, EndStream: endStream})
			for len(b) > 0 {
				n := min(len(b), 16<<10)
				fr.WriteContinuation(id, n == len(b), b[:n])
				b = b[n:]
			}
		}
	}
	then := func(answers ...answer) answer {
		return func(fr *http2.Framer, id uint32) {
			for _, a := range answers {
				a(fr, id)
			}
		}
	}
	// blocks encodes each list of fields in turn with one encoder, and
	// answers with them as a header block: a HEADERS frame, then
	// CONTINUATION frames, a part in frames of at most size bytes.
	blocks := func(endStream bool, size int, parts ...[]string) answer {
		return func(fr *http2.Framer, id uint32) {
			var buf bytes.Buffer
			enc := hpack.NewEncoder(&buf)
			var frags [][]byte
			for _, fields := range parts {
				buf.Reset()
				for i := 0; i+1 < len(fields); i += 2 {
					enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
				}
				for b := buf.Bytes(); len(b) > 0; b = b[min(len(b), size):] {
					frags = append(frags, bytes.Clone(b[:min(len(b), size)]))
				}
			}
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frags[0], EndHeaders: len(frags) == 1, EndStream: endStream})
			for i := 1; i < len(frags); i++ {
				fr.WriteContinuation(id, i == len(frags)-1, frags[i])
			}
		}
	}
	block := func(fields ...string) []byte {
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		for i := 0; i+1 < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return buf.Bytes()
	}
	// 17 fields of 4035 bytes (HPACK's 32 included) after :status: the
	// 17th goes over 64 KiB.
	var list []string
	for i := range 17 {
		list = append(list, fmt.Sprintf("x%02d", i), strings.Repeat("v", 4000))
	}
	status200 := []string{":status", "200"}
	big := strings.Repeat("b", 16<<10)
	cases := []struct {
		name     string
		answer   answer
		want     string // in the first request's error
		connLost bool   // the connection fails with it
	}{
		{"no :status", headers(true, "content-type", "text/plain"), `malformed response: :status ""`, false},
		{":status not a number", headers(true, ":status", "2x0"), `malformed response: :status "2x0"`, false},
		{"upper-case name", headers(true, ":status", "200", "Apns-Id", "x"), "malformed response", false},
		{"value with a line feed", headers(true, ":status", "200", "apns-id", "a\nb"), "malformed response", false},
		{"pseudo-header after a regular one", headers(true, "apns-id", "x", ":status", "200"), "malformed response", false},
		{"request pseudo-header", headers(true, ":status", "200", ":path", "/"), "malformed response", false},
		{"header list above 64 KiB", headers(true, ":status", "200", "a", big, "b", big, "c", big, "d", big, "e", big), "response header larger than 65536 bytes", false},
		{"END_STREAM on a 1xx", headers(true, ":status", "103"), "END_STREAM on 103", false},
		{"trailers without END_STREAM", then(headers(false, ":status", "200"), headers(false, "grpc-status", "0")), "trailers without END_STREAM", false},
		{"DATA before HEADERS", func(fr *http2.Framer, id uint32) { fr.WriteData(id, true, []byte("x")) }, "DATA before HEADERS", false},
		{"HPACK it cannot decode", func(fr *http2.Framer, id uint32) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, EndHeaders: true})
		}, "connection lost", true},
		{"a stream never opened", func(fr *http2.Framer, id uint32) { h2Answer(fr, id+2, "x") }, "never opened", true},

		// Frame order, as the Framer checks it for us.
		{"CONTINUATION after another frame", func(fr *http2.Framer, id uint32) {
			b := block(":status", "200", "apns-id", "x")
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b[:1], EndStream: true})
			fr.WritePing(false, [8]byte{})
			fr.WriteContinuation(id, true, b[1:])
		}, "got PING for stream 0; expected CONTINUATION", true},
		{"CONTINUATION on another stream", func(fr *http2.Framer, id uint32) {
			b := block(":status", "200", "apns-id", "x")
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b[:1], EndStream: true})
			fr.WriteContinuation(id+2, true, b[1:])
		}, "got CONTINUATION for stream 3; expected stream 1", true},
		{"CONTINUATION without HEADERS", func(fr *http2.Framer, id uint32) {
			fr.WriteContinuation(id, true, block(":status", "200"))
		}, "unexpected CONTINUATION for stream 1", true},
		{"malformed HEADERS on stream 0", func(fr *http2.Framer, id uint32) {
			fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 0, block(":status", "200", "Bad", "x"))
			h2Answer(fr, id, "x")
		}, "HEADERS frame with stream ID 0", true},
		{"HEADERS padded beyond its payload", func(fr *http2.Framer, id uint32) {
			fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream|http2.FlagHeadersPadded, id,
				append([]byte{200}, block(":status", "200")...))
		}, "padded beyond its payload", true},

		// HPACK.
		{"HPACK garbage in a CONTINUATION", func(fr *http2.Framer, id uint32) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block(":status", "200"), EndStream: true})
			fr.WriteContinuation(id, true, []byte{0xff, 0xff, 0xff, 0xff, 0x0f})
		}, "COMPRESSION_ERROR", true},
		{"HPACK block cut in a field", func(fr *http2.Framer, id uint32) {
			b := block(":status", "200", "apns-id", "abcdef")
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b[:len(b)-2], EndHeaders: true, EndStream: true})
		}, "COMPRESSION_ERROR", true},

		// Fields.
		{"upper-case name, said", headers(true, ":status", "200", "Apns-Id", "x"), `malformed response: stream error: stream ID 1; PROTOCOL_ERROR; invalid header field name "Apns-Id"`, false},
		{"name with a space", headers(true, ":status", "200", "apns id", "x"), `invalid header field name "apns id"`, false},
		{"value with a NUL", headers(true, ":status", "200", "apns-id", "a\x00b"), `invalid header field value for "apns-id"`, false},
		{"value with a carriage return", headers(true, ":status", "200", "apns-id", "a\rb"), `invalid header field value for "apns-id"`, false},
		{"regular field before :status", headers(true, "apns-id", "x", ":status", "200"), "pseudo header field after regular", false},
		{"duplicate :status", headers(true, ":status", "200", ":status", "204"), `duplicate pseudo-header ":status"`, false},
		{":path in a response", headers(true, ":status", "200", ":path", "/"), "mix of request and response pseudo headers", false},
		{"unknown pseudo-header", headers(true, ":status", "200", ":foo", "x"), `invalid pseudo-header ":foo"`, false},
		{"malformed trailers", then(headers(false, ":status", "200"), headers(true, "Grpc-Status", "0")), `invalid header field name "Grpc-Status"`, false},
		{"CONTINUATION after a malformed field", blocks(true, 16<<10, []string{":status", "200", "Bad", "x"}, []string{"apns-id", "y"}), "connection error: PROTOCOL_ERROR", true},

		// Size, counted across frames.
		{"header list above 64 KiB in its last CONTINUATION", blocks(true, 4096, append(status200, list[:32]...), list[32:]),
			"response header larger than 65536 bytes", false},
		{"CONTINUATION after the header list went above 64 KiB", blocks(true, 4096, append(status200, list...), []string{"y", "1"}),
			"connection error: PROTOCOL_ERROR", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			goAway := make(chan http2.ErrCode, 4)
			url, d := rawH2Server(t, func(fr *http2.Framer, conn int) {
				fr.WriteSettings()
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.GoAwayFrame:
						goAway <- f.ErrCode
					case *http2.MetaHeadersFrame:
						if conn == 1 && f.StreamID == 1 {
							tc.answer(fr, f.StreamID)
						} else {
							h2Answer(fr, f.StreamID, "fine")
						}
					}
				}
			})
			tr := &h2Transport{dial: d.dial}
			defer tr.CloseIdleConnections()
			ctx := h2Ctx(t)
			if _, _, err := h2Do(ctx, tr, http.MethodGet, url+"/", nil, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("first request: error %v, want one saying %q", err, tc.want)
			}
			if _, body, err := h2Do(ctx, tr, http.MethodGet, url+"/", nil, nil); err != nil || string(body) != "fine" {
				t.Fatalf("second request: %q, %v; want the answer", body, err)
			}
			wantDials := int32(1)
			if tc.connLost {
				wantDials = 2
				select {
				case code := <-goAway:
					if code == http2.ErrCodeNo {
						t.Errorf("GOAWAY %v, want an error code", code)
					}
				case <-ctx.Done():
					t.Error("no GOAWAY for the broken connection")
				}
			}
			if got := d.dials.Load(); got != wantDials {
				t.Errorf("%d dials, want %d", got, wantDials)
			}
		})
	}
}

// TestH2HeaderBlocks reads well-formed header blocks in the shapes a server
// may give them, over one connection whose HPACK tables must stay in step:
// the answer to a canceled request is decoded too, for the table entry it
// adds, which the next answer refers to.
func TestH2HeaderBlocks(t *testing.T) {
	canceled := make(chan struct{}, 1)
	url, d := rawH2Server(t, func(fr *http2.Framer, _ int) {
		fr.WriteSettings()
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf) // the connection's: answers may refer to earlier ones
		answer := func(value string) []byte {
			buf.Reset()
			enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			enc.WriteField(hpack.HeaderField{Name: "x-answer", Value: value})
			return bytes.Clone(buf.Bytes())
		}
		var blocked uint32
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				if f.StreamID == blocked {
					fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: answer("in the table"), EndHeaders: true, EndStream: true})
				}
			case *http2.MetaHeadersFrame:
				id := f.StreamID
				switch f.PseudoValue("path") {
				case "/padded":
					fr.WriteHeaders(http2.HeadersFrameParam{
						StreamID: id, BlockFragment: answer("padded"), EndHeaders: true, EndStream: true,
						PadLength: 7, Priority: http2.PriorityParam{StreamDep: 0, Weight: 15},
					})
				case "/fragments":
					b := answer("fragments")
					fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b[:1], EndStream: true})
					fr.WriteContinuation(id, false, nil)
					for i := 1; i < len(b); i++ {
						fr.WriteContinuation(id, i == len(b)-1, b[i:i+1])
					}
				case "/canceled":
					blocked = id // answered once reset
					canceled <- struct{}{}
				case "/trailer":
					// 80 KB, but x/net counts "trailer" fields apart.
					buf.Reset()
					enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
					enc.WriteField(hpack.HeaderField{Name: "trailer", Value: strings.Repeat("t", 40_000)})
					enc.WriteField(hpack.HeaderField{Name: "x-answer", Value: strings.Repeat("a", 40_000)})
					b := buf.Bytes()
					fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b[:16<<10], EndStream: true})
					for b = b[16<<10:]; len(b) > 0; b = b[min(len(b), 16<<10):] {
						fr.WriteContinuation(id, len(b) <= 16<<10, b[:min(len(b), 16<<10)])
					}
				case "/repeated":
					// Values of one name in a row share the answer's
					// slice of values; not in a row, they cannot.
					buf.Reset()
					for _, kv := range [][2]string{{":status", "200"}, {"vary", "a"}, {"vary", "b"}, {"x-answer", "repeated"}, {"vary", "c"}, {"x-other", "d"}, {"x-other", "e"}, {"vary", "f"}} {
						enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
					}
					fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: buf.Bytes(), EndHeaders: true, EndStream: true})
				case "/table":
					b := answer("in the table")
					if len(b) != 2 {
						t.Errorf("answer of %d bytes, want 2: indexed :status and x-answer", len(b))
					}
					fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndHeaders: true, EndStream: true})
				}
			}
		}
	})
	tr := &h2Transport{dial: d.dial}
	defer tr.CloseIdleConnections()
	get := func(path, want string) http.Header {
		t.Helper()
		resp, _, err := h2Do(h2Ctx(t), tr, http.MethodGet, url+path, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if got := resp.Header.Get("X-Answer"); resp.StatusCode != 200 || got != want {
			t.Errorf("%s: status %d, X-Answer %q; want 200 %q", path, resp.StatusCode, got, want)
		}
		return resp.Header
	}
	get("/padded", "padded")
	get("/fragments", "fragments")
	get("/trailer", strings.Repeat("a", 40_000))
	h := get("/repeated", "repeated")
	if got := fmt.Sprint(h["Vary"], h["X-Other"]); got != "[a b c f] [d e]" {
		t.Errorf("/repeated: Vary and X-Other %s, want [a b c f] [d e]", got)
	}
	h["X-Other"] = append(h["X-Other"], "appended") // must not overwrite vary f
	if got := fmt.Sprint(h["Vary"], h["X-Other"]); got != "[a b c f] [d e appended]" {
		t.Errorf("/repeated, X-Other appended to: Vary and X-Other %s, want [a b c f] [d e appended]", got)
	}

	ctx, cancel := context.WithCancel(h2Ctx(t))
	go func() { <-canceled; cancel() }()
	if _, _, err := h2Do(ctx, tr, http.MethodGet, url+"/canceled", nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("/canceled: error %v, want Canceled", err)
	}
	get("/table", "in the table")
	if n := d.dials.Load(); n != 1 {
		t.Errorf("%d dials, want 1", n)
	}
}

// TestH2ServerSettings checks our SETTINGS and connection window, and that
// the server's INITIAL_WINDOW_SIZE applies to a stream already open: 0
// holds its body back, raising it lets the body go.
func TestH2ServerSettings(t *testing.T) {
	type report struct {
		settings   map[http2.SettingID]uint32
		connWindow uint32
		early      bool // DATA before the window opened
		err        error
	}
	reports := make(chan report, 1)
	url, d := rawH2Server(t, func(fr *http2.Framer, _ int) {
		r := report{settings: map[http2.SettingID]uint32{}}
		defer func() { reports <- r }()
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		fr.WriteWindowUpdate(0, 1<<20)
		opened, got := false, 0
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				r.err = err
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				f.ForeachSetting(func(s http2.Setting) error { r.settings[s.ID] = s.Val; return nil })
			case *http2.WindowUpdateFrame:
				if f.StreamID == 0 {
					r.connWindow += f.Increment
				}
			case *http2.MetaHeadersFrame:
				time.Sleep(50 * time.Millisecond) // DATA now would be early
				fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100_000})
				opened = true
			case *http2.DataFrame:
				r.early = r.early || !opened
				got += len(f.Data())
				if n := uint32(len(f.Data())); n > 0 {
					fr.WriteWindowUpdate(0, n)
					fr.WriteWindowUpdate(f.StreamID, n)
				}
				if f.StreamEnded() {
					h2Answer(fr, f.StreamID, strconv.Itoa(got))
					return
				}
			}
		}
	})
	tr := &h2Transport{dial: d.dial}
	defer tr.CloseIdleConnections()
	_, body, err := h2Do(h2Ctx(t), tr, http.MethodPost, url+"/", nil, make([]byte, 150_000))
	if err != nil || string(body) != "150000" {
		t.Fatalf("answer %q, %v; want 150000 bytes received", body, err)
	}
	r := <-reports
	want := map[http2.SettingID]uint32{
		http2.SettingEnablePush:        0,
		http2.SettingInitialWindowSize: h2StreamWindow,
		http2.SettingMaxHeaderListSize: h2MaxHeaderBytes,
	}
	for id, v := range want {
		if got, ok := r.settings[id]; !ok || got != v {
			t.Errorf("setting %v = %d (sent: %v), want %d", id, got, ok, v)
		}
	}
	if r.connWindow != h2ConnWindow-65535 {
		t.Errorf("connection WINDOW_UPDATE %d, want %d", r.connWindow, h2ConnWindow-65535)
	}
	if r.early {
		t.Error("DATA sent while the stream window was 0")
	}
}

// BenchmarkH2Client compares h2Transport with x/net's http2.Transport on
// APNs-like requests to the same local server, over the same dialer (with
// batched writes, as in production). Both sides run in this process: the
// server's costs are in both figures alike.
func BenchmarkH2Client(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Apns-Id", "0E5C2E3F-7C2B-4E2E-9A44-2B7C1D0F2E11")
		w.WriteHeader(http.StatusOK)
	})
	srv := newH2Server(b, h, nil, nil)
	payload := []byte(`{"aps":{"alert":{"title":"Hello","body":"A message of some length, as pushes carry"},"sound":"default","badge":1},"id":"` + strings.Repeat("x", 120) + `"}`)
	url := srv.URL + "/3/device/" + strings.Repeat("0123456789abcdef", 4)
	header := http.Header{
		"Authorization":   {"bearer " + strings.Repeat("j", 180)},
		"Apns-Topic":      {"com.example.app"},
		"Apns-Push-Type":  {"alert"},
		"Apns-Priority":   {"10"},
		"Apns-Expiration": {"0"},
		"Content-Type":    {"application/json"},
	}
	run := func(b *testing.B, rt http.RoundTripper, d *h2Dialer) {
		// Warm up: connection up, HPACK tables filled.
		if _, _, err := h2Do(context.Background(), rt, http.MethodPost, url, header, payload); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetParallelism(16)
		b.ResetTimer()
		writes := d.writes.Load()
		defer func() { b.ReportMetric(float64(d.writes.Load()-writes)/float64(b.N), "writes/op") }()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
				for k, v := range header {
					req.Header[k] = v
				}
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	b.Run("h2Transport", func(b *testing.B) {
		tr, d := newH2Client(b, srv, true)
		run(b, tr, d)
	})
	b.Run("x-net", func(b *testing.B) {
		d := newH2Dialer(srv, true)
		tr := &http2.Transport{DialTLSContext: func(ctx context.Context, _, addr string, _ *tls.Config) (net.Conn, error) {
			return d.dial(ctx, addr)
		}}
		b.Cleanup(tr.CloseIdleConnections)
		run(b, tr, d)
	})
}

// BenchmarkH2Responses measures what reading an answer costs h2Transport:
// sequential GETs to a raw server over loopback TCP that answers with
// frames encoded once, allocating nothing per request itself, so that
// allocs/op is the client's alone (request, stream, answer).
func BenchmarkH2Responses(b *testing.B) {
	answers := []struct {
		name   string
		fields []string
		body   string
	}{
		{"apns", []string{":status", "200", "apns-id", "0E5C2E3F-7C2B-4E2E-9A44-2B7C1D0F2E11"}, ""},
		{"fcm", []string{
			":status", "200", "content-type", "application/json; charset=UTF-8",
			"vary", "Origin", "vary", "X-Origin", "vary", "Referer",
			"date", "Mon, 01 Jun 2026 10:00:00 GMT", "content-length", "49",
		}, `{"name":"projects/p/messages/0:1717236000000000"}`},
	}
	for _, a := range answers {
		b.Run(a.name, func(b *testing.B) {
			// The answer on stream 1; the server patches the stream id.
			var block, frames bytes.Buffer
			enc := hpack.NewEncoder(&block)
			for i := 0; i+1 < len(a.fields); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: a.fields[i], Value: a.fields[i+1]})
			}
			fr := http2.NewFramer(&frames, nil)
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true, EndStream: a.body == ""})
			idOffsets := []int{5}
			if a.body != "" {
				idOffsets = append(idOffsets, frames.Len()+5)
				fr.WriteData(1, true, []byte(a.body))
			}
			answer := frames.Bytes()

			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			b.Cleanup(func() { ln.Close(); wg.Wait() })
			wg.Go(func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				r := bufio.NewReader(c)
				if _, err := r.Discard(len(http2.ClientPreface)); err != nil {
					return
				}
				c.Write([]byte{0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0}) // empty SETTINGS
				var hdr [9]byte
				for {
					if _, err := io.ReadFull(r, hdr[:]); err != nil {
						return
					}
					length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
					if _, err := r.Discard(length); err != nil {
						return
					}
					typ, flags := http2.FrameType(hdr[3]), http2.Flags(hdr[4])
					if (typ == http2.FrameHeaders || typ == http2.FrameData) && flags.Has(http2.FlagHeadersEndStream) {
						for _, off := range idOffsets {
							copy(answer[off:off+4], hdr[5:9])
						}
						if _, err := c.Write(answer); err != nil {
							return
						}
					}
				}
			})
			tr := &h2Transport{dial: func(ctx context.Context, addr string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			}}
			b.Cleanup(tr.CloseIdleConnections)
			req, _ := http.NewRequest(http.MethodGet, "https://"+ln.Addr().String()+"/", nil)
			roundTrip := func() {
				resp, err := tr.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				if resp.StatusCode != 200 || resp.ContentLength != int64(len(a.body)) || a.body != "" && resp.Header.Get("Content-Length") != strconv.Itoa(len(a.body)) {
					b.Fatalf("status %d, %d bytes", resp.StatusCode, resp.ContentLength)
				}
			}
			roundTrip() // connection up, HPACK tables filled
			b.ReportAllocs()
			for b.Loop() {
				roundTrip()
			}
		})
	}
}
