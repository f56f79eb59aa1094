package relay

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
)

// egressLogEvery is how often, at most, an app's egress misconfiguration
// of one reason is logged; the lines in between are counted.
const egressLogEvery = 10 * time.Second

// egressHealth is what an app's sends say of its egress path: whether the
// last of them met a misconfiguration (egress.ErrMisconfigured: a proxy
// refusing the credentials, a certificate not trusted, ...), which fails
// /readyz until the way is seen to work again. It lives in the app, so a
// reload starts it afresh. The zero value is ready for use.
//
// While a misconfiguration that a probe can check is marked, sends do not
// try the way again: each is answered with the same failure at once
// (held), and a probe, at most one per egressProbeEvery, tells when it
// works again. Trying the way per push would log in to the proxy with
// the wrong password dozens of times a second, enough for a directory
// behind the proxy to lock its account; a refused login is therefore
// probed less and less often (proxyAuthProbeMax).
type egressHealth struct {
	bad atomic.Bool // the fast path of every send reads only this

	mu         sync.Mutex
	problem    string                      // the misconfiguration's text, for /readyz
	held       *providers.Result           // answered to every send while bad; nil when no probe can clear it
	logs       map[string]*egressLogWindow // by reason
	target     string                      // host:port it was met on, for the probe
	needH2     bool                        // the probe checks ALPN h2 too
	proxyAuth  bool                        // the proxy refused the login: probes back off
	lastProbe  time.Time
	probeFails int // probes in a row that did not get through
	probing    bool
}

// egressLogWindow is the rate limit of one app's lines of one reason.
type egressLogWindow struct {
	last       time.Time
	suppressed int
}

// newEgressErrors registers pushrelay_egress_errors_total on reg.
func newEgressErrors(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushrelay_egress_errors_total",
		Help: "Sends that failed because the egress path is misconfigured, not down, by app and reason " +
			"(proxy_auth, proxy_refused, proxy_tls, tls_untrusted, tls_name, no_h2, host_not_allowed, wrong_endpoint); each answers FAIL.",
	}, []string{"app", "reason"})
	reg.MustRegister(c)
	return c
}

// egressReason is the egress errors' label for a misconfigured send: the
// provider's reason when it is the egress's own, else host_not_allowed for
// the allowlist's refusal (providers call it egress_denied).
func egressReason(res providers.Result) string {
	switch {
	case slices.Contains(egress.MisconfigReasons(), res.Reason):
		return res.Reason
	case errors.Is(res.Err, egress.ErrHostNotAllowed):
		return egress.ReasonHostNotAllowed
	}
	return "other"
}

// egressMisconfigured reports whether res failed on a misconfigured egress
// path: no attempt can succeed until the configuration changes.
func egressMisconfigured(res providers.Result) bool {
	return res.Outcome == providers.Failed && errors.Is(res.Err, egress.ErrMisconfigured)
}

// observeEgress notes what a send to app a says of the egress path: a
// misconfiguration is counted, logged at error level (once per
// egressLogEvery per reason, with how many were not) and kept for
// /readyz; an answer from the provider (delivered, or the token dead)
// clears it. A send that may just have met a proxy or provider that is
// down changes nothing.
func (r *Relay) observeEgress(a *app, res providers.Result) {
	if res.Outcome == providers.Delivered && !a.egress.bad.Load() {
		return // nearly every send: small enough to be inlined
	}
	r.observeEgressSlow(a, res)
}

// observeEgressSlow is observeEgress for a send that failed, or that
// may clear a problem.
func (r *Relay) observeEgressSlow(a *app, res providers.Result) {
	h := &a.egress
	switch {
	case egressMisconfigured(res):
	case res.Outcome == providers.Delivered || res.Outcome == providers.TokenDead:
		if h.bad.Load() {
			h.clear(r.log, a)
		}
		return
	default:
		return
	}
	reason := egressReason(res)
	if r.metrics.egressErrors != nil {
		r.metrics.egressErrors.WithLabelValues(a.name, reason).Inc()
	}
	// The egress's own text, without the provider's prefix. It names the
	// proxy without credentials, or the host, and what to fix.
	text := res.Err.Error()
	var target string
	var needH2, proxyAuth bool
	if me := egress.AsMisconfig(res.Err); me != nil {
		text, target = me.Error(), me.Target
		needH2, proxyAuth = me.Reason == egress.ReasonNoH2, me.Reason == egress.ReasonProxyAuth
	}
	now := time.Now()
	h.mu.Lock()
	// An endpoint that answers in the provider's place (wrong_endpoint) is
	// counted and logged, not marked: the way works, so no probe could
	// tell when its routes are fixed, and a /readyz failing until the next
	// send gets through would keep a relay out of its load balancer, with
	// no sends, for good. Its pushes keep going (no login is involved).
	if reason != egress.ReasonWrongEndpoint {
		h.problem, h.target, h.needH2, h.proxyAuth = text, target, needH2, proxyAuth
		h.held = nil
		if target != "" && reason != egress.ReasonHostNotAllowed {
			held := res
			h.held = &held
		}
		if !h.bad.Load() {
			h.lastProbe, h.probeFails = now, 0 // the first probe comes egressProbeEvery after the send that failed
		}
		h.bad.Store(true)
	}
	if h.logs == nil {
		h.logs = map[string]*egressLogWindow{}
	}
	w := h.logs[reason]
	if w == nil {
		w = &egressLogWindow{}
		h.logs[reason] = w
	}
	logNow := now.Sub(w.last) >= egressLogEvery
	suppressed := w.suppressed
	if logNow {
		w.last, w.suppressed = now, 0
	} else {
		w.suppressed++
	}
	h.mu.Unlock()
	if logNow {
		r.log.LogAttrs(context.Background(), slog.LevelError, "egress misconfigured: sends fail until the configuration is fixed",
			slog.String("app", a.name), slog.String("provider", a.provider), slog.String("reason", reason),
			slog.String("error", text), slog.Int("suppressed", suppressed))
	}
}

// heldEgress answers a send to app a whose egress path is marked
// misconfigured with the failure that marked it, without trying the way
// again, and starts a probe when one is due. ok is false when nothing is
// held: the send goes ahead.
func (r *Relay) heldEgress(st *state, a *app) (res providers.Result, ok bool) {
	h := &a.egress
	h.mu.Lock()
	held := h.held
	h.mu.Unlock()
	if held == nil {
		return providers.Result{}, false
	}
	r.reprobe(st, a, time.Now())
	r.observeEgressSlow(a, *held) // counted, and logged once per egressLogEvery
	return *held, true
}

// clear forgets the misconfiguration once the way works again.
func (h *egressHealth) clear(log *slog.Logger, a *app) {
	h.mu.Lock()
	was := h.problem
	h.problem, h.held, h.probeFails = "", nil, 0
	h.bad.Store(false)
	h.mu.Unlock()
	if was != "" {
		log.Info("egress works again", "app", a.name, "provider", a.provider)
	}
}

// egressProbeEvery is how often, at most, the way to the host of an app's
// misconfiguration is probed; proxyAuthProbeMax is how far the wait
// between probes doubles when the proxy refused the login (a probe is a
// login); egressProbeTimeout bounds a probe.
var (
	egressProbeEvery   = 10 * time.Second
	proxyAuthProbeMax  = 5 * time.Minute
	egressProbeTimeout = 10 * time.Second
)

// reprobeEgress starts, for each app whose egress is marked misconfigured,
// a probe when one is due (see reprobe). /readyz calls it: a relay taken
// out of its load balancer by a failing /readyz gets no sends that could
// start one, and the fix may be the proxy's, not ours.
func (r *Relay) reprobeEgress() {
	st := r.state.Load()
	now := time.Now()
	for _, a := range st.all() {
		if a.egress.bad.Load() {
			r.reprobe(st, a, now)
		}
	}
}

// probeInterval is the wait between the start of one probe and the next:
// egressProbeEvery, doubling after each failed probe up to
// proxyAuthProbeMax when the proxy refused the login. h.mu is held.
func (h *egressHealth) probeInterval() time.Duration {
	if !h.proxyAuth {
		return egressProbeEvery
	}
	return min(egressProbeEvery<<min(h.probeFails, 10), max(proxyAuthProbeMax, egressProbeEvery))
}

// reprobe starts a probe of the way to the host app a's misconfiguration
// was met on, through the current egress path (the proxy, its tunnel, TLS
// with the certificate verified, ALPN h2 where that was the problem), if
// none is running and the last one started at least egressProbeEvery ago
// (doubling after each failed one up to proxyAuthProbeMax when the proxy
// refused the login). One that gets through clears the mark.
func (r *Relay) reprobe(st *state, a *app, now time.Time) {
	h := &a.egress
	h.mu.Lock()
	start := !h.probing && h.target != "" && now.Sub(h.lastProbe) >= h.probeInterval()
	if start {
		h.probing, h.lastProbe = true, now
	}
	target, needH2 := h.target, h.needH2
	h.mu.Unlock()
	if start {
		go r.probeEgress(st.egress, a, target, needH2)
	}
}

// probeEgress probes the way to target (host:port, or a host on 443) for
// app a, and clears a's mark when it gets through.
func (r *Relay) probeEgress(eg *egress.Egress, a *app, target string, needH2 bool) {
	h := &a.egress
	defer func() {
		h.mu.Lock()
		h.probing = false
		h.mu.Unlock()
	}()
	host, port := target, 443
	if hst, p, err := net.SplitHostPort(target); err == nil {
		host = hst
		if n, err := strconv.Atoi(p); err == nil {
			port = n
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), egressProbeTimeout)
	defer cancel()
	if res := eg.Probe(ctx, []egress.Target{{Host: host, Port: port, NeedH2: needH2}}); res[0].Err == nil {
		h.clear(r.log, a)
		return
	}
	h.mu.Lock()
	h.probeFails++
	h.mu.Unlock()
}

// egressProblems lists, for /readyz, each app whose last send met a
// misconfigured egress path: "app apple_rn: egress misconfigured: ...".
func (r *Relay) egressProblems() []string {
	var out []string
	for _, a := range r.state.Load().all() {
		if !a.egress.bad.Load() {
			continue
		}
		a.egress.mu.Lock()
		p := a.egress.problem
		a.egress.mu.Unlock()
		if p != "" {
			out = append(out, "app "+a.name+": "+p)
		}
	}
	slices.Sort(out)
	return out
}
