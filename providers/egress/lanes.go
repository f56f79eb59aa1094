package egress

import (
	"net/http"
	"sync"
	"sync/atomic"
)

// Connection spreading of HTTP2Transport.
const (
	// perLane is how many requests one HTTP/2 connection carries at once
	// before another is opened: then its one writer and one reader are the
	// bottleneck (Apple allows 1000 streams per connection, which a relay
	// never fills), and a connection lost takes fewer requests with it.
	perLane = 100
	// maxLanes bounds the connections of one app.
	maxLanes = 8
)

// lanes is a RoundTripper over up to maxLanes HTTP/2 transports, each with
// its own connection: a request goes to the least busy one, and a new one
// opens when every lane carries perLane requests.
type lanes struct {
	open func() http.RoundTripper // makes the transport of a new lane
	mu   sync.Mutex               // serializes adding a lane
	all  atomic.Pointer[[]*lane]
}

type lane struct {
	rt       http.RoundTripper
	inFlight atomic.Int32 // requests sent and not yet answered
}

func newLanes(open func() http.RoundTripper) *lanes {
	l := &lanes{open: open}
	l.all.Store(&[]*lane{{rt: open()}})
	return l
}

func (l *lanes) RoundTrip(r *http.Request) (*http.Response, error) {
	ln := l.pick()
	ln.inFlight.Add(1)
	defer ln.inFlight.Add(-1) // answered: the small body follows at once
	return ln.rt.RoundTrip(r)
}

// pick returns the least busy lane, or a new one when all are full.
func (l *lanes) pick() *lane {
	all := *l.all.Load()
	best := all[0]
	for _, ln := range all[1:] {
		if ln.inFlight.Load() < best.inFlight.Load() {
			best = ln
		}
	}
	if best.inFlight.Load() < perLane || len(all) >= maxLanes {
		return best
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := *l.all.Load(); len(now) != len(all) {
		return now[len(now)-1] // another request just opened one
	}
	ln := &lane{rt: l.open()}
	grown := append(all[:len(all):len(all)], ln)
	l.all.Store(&grown)
	return ln
}

// count is how many lanes are open.
func (l *lanes) count() int { return len(*l.all.Load()) }

// CloseIdleConnections closes the idle connections of every lane.
func (l *lanes) CloseIdleConnections() {
	for _, ln := range *l.all.Load() {
		if c, ok := ln.rt.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
}
