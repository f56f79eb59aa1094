package egress

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// limitServer is a raw HTTP/2 server on loopback for the lanes' tests.
// Each connection advertises SETTINGS_MAX_CONCURRENT_STREAMS (the
// server's limit when it starts; setLimit changes it on the open ones
// too), refuses a stream beyond it with REFUSED_STREAM (RFC 9113 5.1.2),
// and holds every answer until release.
type limitServer struct {
	url      string
	d        *h2Dialer
	arrived  chan *limitConn // the connection of each request taken
	released chan struct{}   // closed: answer all, now and from now on
	once     sync.Once

	mu      sync.Mutex
	limit   uint32
	conns   []*limitConn
	refused int
}

// limitConn is one connection of a limitServer.
type limitConn struct {
	n     int           // from 1, in the order they came
	ready chan struct{} // closed when the client ACKed our first SETTINGS
	acks  chan struct{} // a value for each later ACK

	wmu sync.Mutex
	fr  *http2.Framer

	// Under the server's mu.
	limit   uint32
	open    int // streams taken and not yet answered
	streams int // streams taken
}

func newLimitServer(t *testing.T, limit uint32) *limitServer {
	t.Helper()
	s := &limitServer{
		arrived:  make(chan *limitConn, 1000),
		released: make(chan struct{}),
		limit:    limit,
	}
	s.url, s.d = rawH2ServerConn(t, func(_ *tls.Conn, fr *http2.Framer, n int) { s.serve(fr, n) })
	t.Cleanup(s.release) // before the listener's cleanup: no answer stays held
	return s
}

func (s *limitServer) release() { s.once.Do(func() { close(s.released) }) }

func (s *limitServer) serve(fr *http2.Framer, n int) {
	c := &limitConn{n: n, fr: fr, ready: make(chan struct{}), acks: make(chan struct{}, 16)}
	s.mu.Lock()
	c.limit = s.limit
	s.conns = append(s.conns, c)
	c.wmu.Lock()
	fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.limit})
	c.wmu.Unlock()
	s.mu.Unlock()
	acked := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			switch {
			case !f.IsAck():
				c.wmu.Lock()
				fr.WriteSettingsAck()
				c.wmu.Unlock()
			case !acked:
				acked = true
				close(c.ready)
			default:
				c.acks <- struct{}{}
			}
		case *http2.MetaHeadersFrame:
			s.take(c, f.StreamID)
		case *http2.GoAwayFrame:
			return
		}
	}
}

// take holds stream id until release, or refuses it beyond the limit.
func (s *limitServer) take(c *limitConn, id uint32) {
	s.mu.Lock()
	refuse := uint32(c.open) >= c.limit
	if refuse {
		s.refused++
	} else {
		c.open++
		c.streams++
	}
	s.mu.Unlock()
	if refuse {
		c.wmu.Lock()
		c.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		c.wmu.Unlock()
		return
	}
	s.arrived <- c
	go func() {
		<-s.released
		s.mu.Lock()
		c.open-- // before the answer: the client may send the next at once
		s.mu.Unlock()
		c.wmu.Lock()
		h2Answer(c.fr, id, "ok")
		c.wmu.Unlock()
	}()
}

// setLimit makes limit the server's, for the connections open (once
// their client ACKed it) and those to come.
func (s *limitServer) setLimit(t *testing.T, limit uint32) {
	t.Helper()
	s.mu.Lock()
	s.limit = limit
	conns := slices.Clone(s.conns)
	for _, c := range conns {
		c.limit = limit
		c.wmu.Lock()
		c.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: limit})
		c.wmu.Unlock()
	}
	s.mu.Unlock()
	for _, c := range conns {
		select {
		case <-c.acks:
		case <-time.After(h2Wait):
			t.Fatalf("connection %d: no ACK of MAX_CONCURRENT_STREAMS %d", c.n, limit)
		}
	}
}

// stats returns the number of connections, of refused streams, and of
// the streams each connection took.
func (s *limitServer) stats() (conns, refused int, streams []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		streams = append(streams, c.streams)
	}
	return len(s.conns), s.refused, streams
}

// limitClient is lanes of h2Transports to s, as HTTP2Transport makes them,
// and the requests it sends.
type limitClient struct {
	t  *testing.T
	s  *limitServer
	l  *lanes
	wg sync.WaitGroup
}

func newLimitClient(t *testing.T, s *limitServer) *limitClient {
	lc := &limitClient{t: t, s: s}
	lc.l = newLanes(func() http.RoundTripper { return &h2Transport{dial: s.d.dial} })
	t.Cleanup(func() {
		s.release()
		lc.wg.Wait()
		lc.l.CloseIdleConnections()
	})
	return lc
}

// send sends a request, which ends when the server releases it.
func (lc *limitClient) send() {
	ctx := h2Ctx(lc.t)
	lc.wg.Go(func() {
		resp, body, err := h2Do(ctx, lc.l, http.MethodGet, lc.s.url+"/", nil, nil)
		if err != nil {
			lc.t.Error(err)
		} else if resp.StatusCode != 200 || string(body) != "ok" {
			lc.t.Errorf("status %d body %q, want 200 ok", resp.StatusCode, body)
		}
	})
}

// sendArrived sends a request and waits until the server holds it and
// the client knows the server's limit on its connection, which it returns.
func (lc *limitClient) sendArrived() *limitConn {
	lc.t.Helper()
	lc.send()
	select {
	case c := <-lc.s.arrived:
		select {
		case <-c.ready:
		case <-time.After(h2Wait):
			lc.t.Fatalf("connection %d: the client never ACKed the SETTINGS", c.n)
		}
		return c
	case <-time.After(h2Wait):
		lc.t.Fatal("a request never reached the server")
		return nil
	}
}

// inFlight is how many requests the lanes carry.
func (lc *limitClient) inFlight() int {
	n := 0
	for _, ln := range *lc.l.all.Load() {
		n += int(ln.inFlight.Load())
	}
	return n
}

// TestH2StreamLimit: h2Transport.streamLimit tells its connection's
// MAX_CONCURRENT_STREAMS once the server's SETTINGS are in, follows it
// when the server changes it, and knows none once the connection closed.
func TestH2StreamLimit(t *testing.T) {
	s := newLimitServer(t, 3)
	lc := newLimitClient(t, s)
	tr := (*lc.l.all.Load())[0].rt.(*h2Transport)
	check := func(when string, want int, wantOK bool) {
		t.Helper()
		if n, ok := tr.streamLimit(); n != want || ok != wantOK {
			t.Errorf("%s: streamLimit %d, %v; want %d, %v", when, n, ok, want, wantOK)
		}
	}
	check("before any connection", 0, false)
	lc.sendArrived()
	check("after the server's SETTINGS", 3, true)
	s.setLimit(t, 1)
	check("after the server lowered it", 1, true)
	s.release()
	lc.wg.Wait()
	tr.CloseIdleConnections()
	check("once the connection closed", 0, false)
}

// TestLanesFollowMaxConcurrentStreams: n requests in flight at once to a
// server allowing limit streams per connection open as many connections
// as they need at limit (or perLane) each, up to maxLanes; beyond, they
// wait, with no stream refused. The requests are sent one by one, each
// once the one before reached the server and its connection's SETTINGS
// are in: what is counted is connections, not time.
func TestLanesFollowMaxConcurrentStreams(t *testing.T) {
	for _, tc := range []struct {
		limit     uint32
		n         int
		wantConns int
	}{
		{limit: 1, n: 3, wantConns: 3},
		{limit: 1, n: 2 * maxLanes, wantConns: maxLanes},
		{limit: 3, n: 7, wantConns: 3},
		{limit: 100, n: 50, wantConns: 1},
		{limit: 128, n: perLane + 1, wantConns: 2}, // perLane is the cap
	} {
		t.Run(fmt.Sprintf("limit=%d,n=%d", tc.limit, tc.n), func(t *testing.T) {
			s := newLimitServer(t, tc.limit)
			lc := newLimitClient(t, s)
			room := maxLanes * min(int(tc.limit), perLane)
			for i := range tc.n {
				if i < room {
					lc.sendArrived()
				} else {
					lc.send() // waits for a stream in a lane's client
				}
			}
			waitFor(t, "every request in a lane", func() bool { return lc.inFlight() == tc.n })
			conns, refused, _ := s.stats()
			if conns != tc.wantConns || lc.l.count() != tc.wantConns || int(s.d.dials.Load()) != tc.wantConns {
				t.Errorf("%d requests at once: %d connections, %d lanes, %d dials; want %d",
					tc.n, conns, lc.l.count(), s.d.dials.Load(), tc.wantConns)
			}
			s.release()
			lc.wg.Wait()
			if conns, refused2, streams := s.stats(); refused2 != refused || refused != 0 || conns != tc.wantConns {
				t.Errorf("%d connections %v, %d streams refused; want %d connections, none refused", conns, streams, refused2, tc.wantConns)
			}
		})
	}
}

// TestLanesFollowAChangedLimit: a MAX_CONCURRENT_STREAMS lowered on an
// open connection makes its lane full, and new requests open new lanes;
// raised again, the lanes open take requests again.
func TestLanesFollowAChangedLimit(t *testing.T) {
	s := newLimitServer(t, 100)
	lc := newLimitClient(t, s)
	for range 4 {
		if c := lc.sendArrived(); c.n != 1 {
			t.Fatalf("under the limit 100, a request on connection %d; want 1", c.n)
		}
	}
	s.setLimit(t, 1) // connection 1 carries 4 streams: more than allowed now
	for want := 2; want <= 3; want++ {
		if c := lc.sendArrived(); c.n != want {
			t.Fatalf("with the limit lowered to 1, a request on connection %d; want a new one, %d", c.n, want)
		}
	}
	s.setLimit(t, 100)
	// Lanes 2 and 3 carry 1 request each, lane 1 carries 4: the first
	// least busy is lane 2.
	if c := lc.sendArrived(); c.n != 2 {
		t.Errorf("with the limit raised to 100 again, a request on connection %d; want 2", c.n)
	}
	conns, refused, streams := s.stats()
	if conns != 3 || lc.l.count() != 3 || !slices.Equal(streams, []int{4, 2, 1}) || refused != 0 {
		t.Errorf("%d connections (%d lanes) took %v streams, %d refused; want 3 taking [4 2 1], none refused",
			conns, lc.l.count(), streams, refused)
	}
	s.release()
	lc.wg.Wait()
}

// TestLanesWithoutAStreamLimit: a transport that does not tell its
// server's limit fills its lane at perLane, as with an h2Transport before
// its first SETTINGS.
func TestLanesWithoutAStreamLimit(t *testing.T) {
	opened := 0
	l := newLanes(func() http.RoundTripper { opened++; return http.DefaultTransport })
	first := l.pick()
	if n, known := first.limit(); first.limiter != nil || n != perLane || known {
		t.Fatalf("limit %d, %v (limiter %v), want perLane, unknown", n, known, first.limiter)
	}
	first.inFlight.Store(perLane - 1)
	if l.pick() != first || opened != 1 {
		t.Fatalf("%d in flight: another lane opened", perLane-1)
	}
	first.inFlight.Store(perLane)
	if l.pick() == first || opened != 2 {
		t.Fatalf("%d in flight: no other lane opened", perLane)
	}
	tr := &h2Transport{}
	if n, ok := tr.streamLimit(); ok {
		t.Fatalf("h2Transport without a connection: limit %d, %v; want unknown", n, ok)
	}
	if n, known := newLane(tr).limit(); n != perLane || known {
		t.Fatalf("its lane: limit %d, %v; want perLane, unknown", n, known)
	}
}

// TestLanesNewLaneTakesTheKnownLimit: a lane whose server's limit is not
// known yet (its connection opened under load, SETTINGS not in) counts as
// having the lowest limit another lane knows, so that a burst behind a
// server allowing one stream per connection spreads one per lane instead
// of piling onto the new lane, which would take them one at a time.
func TestLanesNewLaneTakesTheKnownLimit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		first     fakeLimit // the lane that knows
		wantLanes int       // after maxLanes requests, each picked while the others are in flight
	}{
		{"limit 1 known", fakeLimit{n: 1, ok: true}, maxLanes},
		{"limit 200 known: perLane", fakeLimit{n: 200, ok: true}, 1},
		{"none known: perLane", fakeLimit{}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opened := 0
			l := newLanes(func() http.RoundTripper {
				opened++
				if opened == 1 {
					return tc.first
				}
				return fakeLimit{} // not known yet
			})
			for range maxLanes {
				l.pick().inFlight.Add(1)
			}
			if got := l.count(); got != tc.wantLanes {
				t.Errorf("%d requests: %d lanes, want %d", maxLanes, got, tc.wantLanes)
			}
		})
	}
}

// fakeLimit is a lane's transport that tells a fixed stream limit.
type fakeLimit struct {
	http.RoundTripper
	n  int
	ok bool
}

func (f fakeLimit) streamLimit() (int, bool) { return f.n, f.ok }

func TestLessBusy(t *testing.T) {
	for _, tc := range []struct {
		n, lim, n2, lim2 int32
		want             bool
	}{
		{0, 100, 1, 100, true},
		{1, 100, 1, 100, false},
		{1, 1, 5, 100, false}, // full against not full
		{5, 100, 1, 1, true},
		{2, 1, 3, 1, true}, // both full: fewer waiting
		{0, 0, 5, 1, false},
		{5, 1, 0, 0, true},
		{1, 0, 2, 0, true},
	} {
		if got := lessBusy(tc.n, tc.lim, tc.n2, tc.lim2); got != tc.want {
			t.Errorf("lessBusy(%d of %d, %d of %d) = %v, want %v", tc.n, tc.lim, tc.n2, tc.lim2, got, tc.want)
		}
	}
}

// BenchmarkLanesPick measures picking among maxLanes lanes of
// h2Transports whose connections' limits are known, half full.
func BenchmarkLanesPick(b *testing.B) {
	l := newLanes(func() http.RoundTripper {
		tr := &h2Transport{}
		c := &h2Conn{}
		c.peerMaxStreams.Store(100)
		tr.last.Store(c)
		return tr
	})
	for range maxLanes - 1 {
		all := *l.all.Load()
		for _, ln := range all {
			ln.inFlight.Store(perLane)
		}
		l.pick()
	}
	for _, ln := range *l.all.Load() {
		ln.inFlight.Store(perLane / 2)
	}
	if l.count() != maxLanes {
		b.Fatalf("%d lanes, want %d", l.count(), maxLanes)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.pick()
		}
	})
}

// BenchmarkLanesStreamLimit sends from 32 goroutines at once to a local
// Go HTTP/2 server allowing limit streams per connection, whose handler
// takes delay, through lanes that follow the limit and through lanes that
// do not see it (their transport hidden behind a plain RoundTripper, as
// before they followed it), in the same run. Reports requests/s, the
// latency's p50, p99 and max, and the connections used.
func BenchmarkLanesStreamLimit(b *testing.B) {
	const senders = 32
	for _, limit := range []uint32{1, 100} {
		for _, delay := range []time.Duration{0, time.Millisecond} {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if delay > 0 {
					time.Sleep(delay)
				}
				w.Header().Set("Apns-Id", "0E5C2E3F-7C2B-4E2E-9A44-2B7C1D0F2E11")
			})
			srv := newH2Server(b, h, &http.HTTP2Config{MaxConcurrentStreams: int(limit)}, nil)
			for _, follow := range []bool{false, true} {
				name := fmt.Sprintf("limit=%d/delay=%v/ignored", limit, delay)
				if follow {
					name = fmt.Sprintf("limit=%d/delay=%v/followed", limit, delay)
				}
				b.Run(name, func(b *testing.B) {
					d := newH2Dialer(srv, true)
					var trs []*h2Transport
					l := newLanes(func() http.RoundTripper {
						tr := &h2Transport{dial: d.dial}
						trs = append(trs, tr) // under l.mu
						if !follow {
							return struct{ http.RoundTripper }{tr}
						}
						return tr
					})
					b.Cleanup(func() {
						for _, tr := range trs {
							tr.CloseIdleConnections()
						}
					})
					get := func() error {
						_, _, err := h2Do(context.Background(), l, http.MethodGet, srv.URL+"/", nil, nil)
						return err
					}
					if err := get(); err != nil { // the first connection and its SETTINGS
						b.Fatal(err)
					}
					lat := make([][]time.Duration, senders)
					var next atomic.Int64
					var wg sync.WaitGroup
					b.ResetTimer()
					for g := range senders {
						wg.Go(func() {
							for next.Add(1) <= int64(b.N) {
								t0 := time.Now()
								if err := get(); err != nil {
									b.Error(err)
									return
								}
								lat[g] = append(lat[g], time.Since(t0))
							}
						})
					}
					wg.Wait()
					b.StopTimer()
					all := slices.Concat(lat...)
					slices.Sort(all)
					if len(all) > 0 {
						b.ReportMetric(all[len(all)/2].Seconds()*1e3, "p50-ms")
						b.ReportMetric(all[len(all)*99/100].Seconds()*1e3, "p99-ms")
						b.ReportMetric(all[len(all)-1].Seconds()*1e3, "max-ms")
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
					b.ReportMetric(float64(d.dials.Load()), "conns")
				})
			}
		}
	}
}
