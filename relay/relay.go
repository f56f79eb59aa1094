// Package relay is pushrelay's pipeline: the ingress HTTP server that speaks
// Mattermost's push-proxy API, the configuration, and the one straight data
// path decode -> authorize -> validate -> policy -> route -> send -> answer.
//
// It owns ingress, authorization, limits, the data path, acks, config and
// metrics. It never builds a provider: cmd/pushrelay hands NewServer a
// Providers function. It imports policy, providers (the interface),
// providers/appconfig (the YAML types of apps[].apns, .fcm and .upstream,
// with their validation, each error naming its key), providers/egress,
// relay/spool and relay/wire. It never imports a concrete provider
// (providers/apns, fcm, upstream, sandbox) or anything under cmd.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushrelay/pushrelay/policy"
	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/relay/spool"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// Relay carries notifications from the Mattermost server to the providers.
// It is safe for concurrent use; Server.Reload swaps policy and providers
// atomically.
type Relay struct {
	state      atomic.Pointer[state]
	metrics    *metrics
	log        *slog.Logger
	audit      slog.Level // level of the per-push line when delivered
	spool      *spool.Spool
	maxAge     time.Duration // spool.max_age: a notification's whole life
	firstRetry time.Duration // delivery.backoff.initial
	sent       *sentLog      // when each delivered ack_id left, for its ack
	acks       *ackForwarder // acks on their way to upstream push proxies
	dead       *deadTokens   // device tokens a redelivery found dead: answered REMOVE at once
	shared     sharedDead    // the same, shared through the spool
	providers  Providers     // builds each app's provider, at start and on reload
}

// Providers builds the provider of one configured app, sending through the
// egress path eg. cmd/pushrelay passes the one that knows APNs, FCM and
// upstream push proxies; the relay never names a provider itself. Its
// error names the key at fault below the app (e.g. "apns.topic: ..."):
// the relay prefixes the app's key.
type Providers func(app AppConfig, eg *egress.Egress) (providers.Provider, error)

// state is everything a reload replaces at once.
type state struct {
	policy   *policy.Policy
	apps     map[string]*app
	wildcard *app
	timeout  time.Duration
	egress   *egress.Egress
}

// app is one configured platform and the provider that serves it.
type app struct {
	name       string // the configured platform name: a metric label
	provider   string // apns, fcm or upstream: a metric label
	send       providers.Provider
	certExpiry time.Time // zero when the credential does not expire
	breaker    *breaker  // kept across reloads
	// A misconfigured egress its sends met, for /readyz; not kept across reloads.
	egress egressHealth
}

func newRelay(cfg *Config, build Providers, m *metrics, log *slog.Logger) (*Relay, error) {
	r := &Relay{metrics: m, log: log, audit: slog.LevelDebug, providers: build,
		maxAge: cfg.Spool.MaxAge, firstRetry: cfg.Delivery.Backoff.Initial,
		sent: newSentLog(sentLogSize, cfg.Spool.MaxAge), acks: newAckForwarder(),
		dead: newDeadTokens(cfg.Spool.MaxAge, maxDeadTokens)}
	if cfg.Log.Audit {
		r.audit = slog.LevelInfo
	}
	m.watchDeadTokens(r.dead.len)
	st, err := r.build(cfg)
	if err != nil {
		return nil, err
	}
	r.swap(st)
	return r, nil
}

// build makes a new state from cfg: policy, egress and one provider per app.
// Errors name the config key at fault.
func (r *Relay) build(cfg *Config) (*state, error) {
	if r.providers == nil {
		return nil, errors.New("relay: no Providers to build the apps' providers with")
	}
	pol, err := policy.New(cfg.Policy)
	if err != nil {
		return nil, err
	}
	hosts, err := AppHosts(cfg)
	if err != nil {
		return nil, err
	}
	eg, err := egress.New(cfg.Egress, hosts, func(host string) {
		r.metrics.egressDenied.WithLabelValues(host).Inc()
		r.log.Warn("egress refused: host not allowed", "host", host)
	})
	if err != nil {
		return nil, err
	}
	st := &state{policy: pol, apps: map[string]*app{}, timeout: cfg.Delivery.Timeout, egress: eg}
	old := r.state.Load()
	for i, a := range cfg.Apps {
		ap := &app{name: a.Platform, breaker: &breaker{}}
		if old != nil {
			if prev := old.byName(a.Platform); prev != nil {
				ap.breaker = prev.breaker
			}
		}
		ap.provider = a.Kind()
		if ap.provider == "" {
			return nil, fmt.Errorf("apps[%d]: no provider configured", i)
		}
		p, err := r.providers(a, eg)
		if err != nil {
			return nil, fmt.Errorf("apps[%d].%w", i, err)
		}
		ap.send = p
		if c, ok := p.(interface{ CertExpiry() time.Time }); ok {
			ap.certExpiry = c.CertExpiry()
		}
		if a.Platform == "*" {
			st.wildcard = ap
		} else {
			st.apps[a.Platform] = ap
		}
	}
	return st, nil
}

// AppHosts lists the host names the configured apps connect to: each
// endpoint (or its default), each service account's token_uri, each
// upstream URL. It is the default egress allowlist.
func AppHosts(cfg *Config) ([]string, error) {
	var hosts []string
	for i, a := range cfg.Apps {
		switch {
		case a.APNs != nil:
			hosts = append(hosts, a.APNs.Hosts()...)
		case a.FCM != nil:
			h, err := a.FCM.Hosts()
			if err != nil {
				return nil, fmt.Errorf("apps[%d].%w", i, err)
			}
			hosts = append(hosts, h...)
		case a.Upstream != nil:
			hosts = append(hosts, a.Upstream.Hosts()...)
		}
	}
	return hosts, nil
}

// swap installs st and refreshes the metrics that describe it.
func (r *Relay) swap(st *state) {
	old := r.state.Swap(st)
	r.metrics.credExpiry.Reset()
	for _, a := range st.all() {
		if !a.certExpiry.IsZero() {
			r.metrics.credExpiry.WithLabelValues(a.name).Set(float64(a.certExpiry.Unix()))
		}
	}
	if old != nil {
		// In-flight sends keep their connections; idle ones of the old pools go.
		old.egress.CloseIdleConnections()
		for _, a := range old.all() {
			if c, ok := a.send.(interface{ Close() }); ok {
				c.Close()
			}
		}
	}
}

func (st *state) all() []*app {
	out := make([]*app, 0, len(st.apps)+1)
	for _, a := range st.apps {
		out = append(out, a)
	}
	if st.wildcard != nil {
		out = append(out, st.wildcard)
	}
	return out
}

// byName returns the app configured for exactly this platform name ("*"
// included), as the spool names them.
func (st *state) byName(name string) *app {
	if name == "*" {
		return st.wildcard
	}
	return st.apps[name]
}

func (st *state) route(platform string) *app {
	if a, ok := st.apps[platform]; ok {
		return a
	}
	return st.wildcard
}

// ErrUnknownPlatform answers a notification for a platform no app serves.
var ErrUnknownPlatform = errors.New("platform is not configured on this relay")

// Push is the whole data path for one notification that has been decoded
// and authorized: validate, strip by policy, route by platform, send with
// the delivery deadline, and answer as Mattermost's push proxy does.
// Once accepted, a notification is sent even if the caller goes away.
func (r *Relay) Push(ctx context.Context, n wire.Notification) wire.Response {
	st := r.state.Load()
	typ := wire.TypeLabel(n.Type)
	if err := n.Normalize(); err != nil {
		r.metrics.outcome(outcomeEvent{app: "none", provider: "none", typ: typ, outcome: outcomeRejected})
		r.log.LogAttrs(ctx, slog.LevelInfo, "push rejected", slog.String("type", typ), slog.String("error", err.Error()))
		return wire.Fail(err)
	}
	a := st.route(n.Platform)
	if a == nil {
		r.metrics.outcome(outcomeEvent{app: "unknown", provider: "none", typ: typ, outcome: outcomeRejected})
		platform := wire.TruncateUTF8(n.Platform, 64)
		r.log.LogAttrs(ctx, slog.LevelWarn, "push rejected: platform not configured", slog.String("platform", platform), slog.String("type", typ))
		return wire.Fail(fmt.Errorf("%w: %q", ErrUnknownPlatform, platform))
	}

	if !r.dead.empty() && r.rememberedDead(ctx, a, &n, typ) {
		return wire.Remove()
	}

	// The policy's output goes to the provider by pointer, so it lives on
	// the heap: recycled, since at 15,000 pushes/s its 400 bytes were a
	// tenth of what the relay allocated. Nothing keeps it past Push.
	out := outputs.Get().(*wire.Notification)
	defer func() { *out = wire.Notification{}; outputs.Put(out) }()
	var removed policy.Removed
	*out, removed = st.policy.Apply(n)
	r.metrics.removed(removed.Fields)

	accepted := time.Now()
	var res providers.Result
	var elapsed time.Duration
	if a.breaker.allow(accepted) {
		// Once accepted, a notification is sent even if Mattermost hangs up.
		res, elapsed = r.deliver(context.WithoutCancel(ctx), st, a, out, providers.Attempt{Expires: accepted.Add(r.maxAge)})
	} else {
		// The provider keeps failing: do not make Mattermost wait on it;
		// the spool's redeliveries probe it.
		res = providers.Retryable("provider_failing", 0, errProviderFailing)
	}

	var outcome string
	var resp wire.Response
	switch res.Outcome {
	case providers.Delivered:
		outcome, resp = outcomeDelivered, wire.OK()
	case providers.TokenDead:
		outcome, resp = outcomeRemoved, wire.Remove()
	case providers.Retry:
		outcome, resp = r.keep(ctx, a, out, accepted, res)
	default:
		outcome, resp = outcomeFailed, wire.Fail(res.Err)
	}
	r.count(a, out, typ, outcome, res.Reason, true)

	level := r.audit
	switch {
	case res.Outcome == providers.TokenDead:
		level = slog.LevelInfo
	case egressMisconfigured(res): // said at error level once per 10 s (observeEgress), not per push
	case outcome == outcomeFailed:
		level = slog.LevelWarn
	}
	if r.log.Enabled(ctx, level) {
		attrs := []slog.Attr{
			slog.String("app", a.name), slog.String("provider", a.provider), slog.String("type", typ),
			slog.String("outcome", outcome), slog.String("token", wire.TokenHash(out.DeviceID)),
			slog.String("rule", removed.Rule), slog.String("removed", removed.Fields.String()),
			slog.Duration("took", elapsed),
		}
		if res.Err != nil {
			attrs = append(attrs, slog.String("reason", res.Reason), slog.String("error", res.Err.Error()))
		}
		// The audit line: what was decided and removed, never a value.
		r.log.LogAttrs(ctx, level, "push", attrs...)
	}
	return resp
}

// outputs holds spare notifications for Push's policy output.
var outputs = sync.Pool{New: func() any { return new(wire.Notification) }}

// count records the outcome of a notification that reached app a and,
// once it is delivered, remembers when, so that its ack can be timed.
func (r *Relay) count(a *app, n *wire.Notification, typ, outcome, reason string, direct bool) {
	r.metrics.outcome(outcomeEvent{app: a.name, provider: a.provider, typ: typ, transport: n.Transport,
		outcome: outcome, reason: reason, direct: direct})
	if outcome == outcomeDelivered && n.AckID != "" {
		r.sent.remember(n.AckID, a.name, time.Now())
	}
}

// errProviderFailing is the reason a notification skipped its direct
// attempt and went straight to the spool.
var errProviderFailing = errors.New("provider is failing; kept for redelivery")

// send makes one attempt, within ctx's deadline, and records it.
func (r *Relay) send(ctx context.Context, st *state, a *app, n *wire.Notification, at providers.Attempt) (providers.Result, time.Duration) {
	if a.egress.bad.Load() {
		if res, held := r.heldEgress(st, a); held {
			return res, 0 // the way is misconfigured: not tried again until a probe gets through
		}
	}
	sendCtx := providers.WithAttempt(ctx, at)
	start := time.Now()
	res := a.send.Send(sendCtx, n)
	elapsed := time.Since(start)
	r.metrics.sent(a.provider, elapsed)
	r.observeEgress(a, res)
	if res.Outcome != providers.Delivered {
		r.metrics.providerErrors.WithLabelValues(a.provider, res.Reason).Inc()
	}
	if opened, closed := a.breaker.record(res.Outcome == providers.Retry, start.Add(elapsed)); opened {
		r.metrics.breaker(a.name, true)
		r.log.Warn("provider keeps failing: new notifications go straight to the spool", "app", a.name, "provider", a.provider)
	} else if closed {
		r.metrics.breaker(a.name, false)
		r.log.Info("provider recovered", "app", a.name, "provider", a.provider)
	}
	return res, elapsed
}

// keep writes a notification whose send is worth retrying to the spool
// and answers OK once it is durable; if the spool cannot take it, the
// answer is FAIL with both reasons.
func (r *Relay) keep(ctx context.Context, a *app, n *wire.Notification, accepted time.Time, res providers.Result) (string, wire.Response) {
	e := spool.Entry{App: a.name, Notification: *n, AppVersion: n.AppVersion, Accepted: accepted}
	putCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), putTimeout(r.state.Load().timeout))
	defer cancel()
	if err := r.spool.Put(putCtx, e, max(res.RetryAfter, r.firstRetry)); err != nil {
		r.metrics.spoolErrors.WithLabelValues(spool.Reason(err)).Inc()
		return outcomeFailed, wire.Fail(fmt.Errorf("%v; not kept for retry: %w", res.Err, err))
	}
	return outcomeSpooled, wire.OK()
}

// putTimeout bounds one spool write: half of delivery.timeout, at most
// 1 s, so that a JetStream that stopped answering costs a push a short
// wait, not its whole delivery timeout. The spool remembers such a failure
// (and a full disk) and refuses the next writes at once until it is over.
func putTimeout(deliveryTimeout time.Duration) time.Duration {
	return min(time.Second, max(deliveryTimeout/2, 100*time.Millisecond))
}
