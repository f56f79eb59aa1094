package egress

import (
	"net/http"
	"sync"
	"sync/atomic"
)

// Connection spreading of HTTP2Transport.
const (
	// perLane is how many requests one HTTP/2 connection carries at once
	// before another is opened, at most: then its one writer and one
	// reader are the bottleneck (Apple allows 1000 streams per connection,
	// which a relay never fills), and a connection lost takes fewer
	// requests with it. A server whose SETTINGS_MAX_CONCURRENT_STREAMS is
	// lower (1 behind some nghttpx or h2o setups, 100 or 128 at gateways)
	// fills a connection sooner: see lane.limit.
	perLane = 100
	// maxLanes bounds the connections of one app: with every lane full,
	// requests wait in the lanes' HTTP/2 clients for a stream.
	maxLanes = 8
)

// lanes is a RoundTripper over up to maxLanes HTTP/2 transports, each with
// its own connection. A request goes to the least busy lane, the one with
// the smallest share of its limit in flight; a new lane opens when every
// lane is full: as many requests in flight as its limit, which is
// min(perLane, the server's current MAX_CONCURRENT_STREAMS on its
// connection). Requests beyond a lane's limit would only wait in its
// client for a stream slot, one after another, while another connection
// could carry them.
//
// Picking a lane costs a few atomic loads per lane, no lock: a lock is
// taken only to add one.
type lanes struct {
	open func() http.RoundTripper // makes the transport of a new lane
	mu   sync.Mutex               // serializes adding a lane
	all  atomic.Pointer[[]*lane]
}

type lane struct {
	rt       http.RoundTripper
	limiter  streamLimiter // rt's, if it tells its server's limit
	inFlight atomic.Int32  // requests sent and not yet answered
}

// streamLimiter is a lane's transport that knows its server's
// SETTINGS_MAX_CONCURRENT_STREAMS (h2Transport): ok is false while unknown
// (no connection up, or its SETTINGS not in yet). streamLimit is called
// for every request and must not block.
type streamLimiter interface {
	streamLimit() (n int, ok bool)
}

func newLane(rt http.RoundTripper) *lane {
	ln := &lane{rt: rt}
	ln.limiter, _ = rt.(streamLimiter)
	return ln
}

// limit is how many requests ln carries before it is full: perLane, or
// the server's limit on its connection if lower; known is false before
// the server's first SETTINGS, with no connection, or with a transport
// that does not tell (see pick).
func (ln *lane) limit() (n int32, known bool) {
	if ln.limiter != nil {
		if n, ok := ln.limiter.streamLimit(); ok {
			return int32(min(n, perLane)), true
		}
	}
	return perLane, false
}

func newLanes(open func() http.RoundTripper) *lanes {
	l := &lanes{open: open}
	l.all.Store(&[]*lane{newLane(open())})
	return l
}

func (l *lanes) RoundTrip(r *http.Request) (*http.Response, error) {
	ln := l.pick()
	ln.inFlight.Add(1)
	defer ln.inFlight.Add(-1) // answered: the small body follows at once
	return ln.rt.RoundTrip(r)
}

// pick returns the least busy lane, or a new one when all are full. With
// maxLanes lanes full, it is the least busy still: the request waits
// there for a stream.
//
// A lane whose limit is not known yet (a connection opened under load,
// its server's SETTINGS not in) is taken to have the lowest limit another
// lane knows, since it is the same server; perLane when none knows one.
// Otherwise a burst would pile onto the new lane and wait there, one
// stream at a time, while other connections could carry it.
func (l *lanes) pick() *lane {
	all := *l.all.Load()
	var lims [maxLanes]int32
	var known [maxLanes]bool
	unknown := int32(perLane)
	for i, ln := range all {
		lims[i], known[i] = ln.limit()
		if known[i] {
			unknown = min(unknown, lims[i])
		}
	}
	best, bestN, bestMax := all[0], all[0].inFlight.Load(), lims[0]
	if !known[0] {
		bestMax = unknown
	}
	for i, ln := range all[1:] {
		n, lim := ln.inFlight.Load(), lims[i+1]
		if !known[i+1] {
			lim = unknown
		}
		if lessBusy(n, lim, bestN, bestMax) {
			best, bestN, bestMax = ln, n, lim
		}
	}
	if bestN < bestMax || len(all) >= maxLanes {
		return best
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := *l.all.Load(); len(now) != len(all) {
		return now[len(now)-1] // another request just opened one
	}
	ln := newLane(l.open())
	grown := append(all[:len(all):len(all)], ln)
	l.all.Store(&grown)
	return ln
}

// lessBusy reports whether a lane with n requests in flight of its limit
// lim is less busy than one with n2 of lim2: a smaller share of its limit
// used (with equal limits, fewer requests). A lane whose server takes no
// stream for now (a limit of 0) is busier than any other.
func lessBusy(n, lim, n2, lim2 int32) bool {
	switch {
	case lim == 0:
		return lim2 == 0 && n < n2
	case lim2 == 0:
		return true
	}
	return int64(n)*int64(lim2) < int64(n2)*int64(lim)
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
