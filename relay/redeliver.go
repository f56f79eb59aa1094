package relay

import (
	"context"
	"log/slog"
	"time"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/relay/spool"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// redeliver is the spool's delivery callback: one more attempt at a kept
// notification, through the app's current provider.
func (r *Relay) redeliver(ctx context.Context, e spool.Entry, attempt int) spool.Verdict {
	st := r.state.Load()
	n := e.Notification
	n.AppVersion = e.AppVersion
	typ := wire.TypeLabel(n.Type)
	a := st.byName(e.App)
	if a == nil {
		r.metrics.outcome(outcomeEvent{app: "unknown", provider: "none", typ: typ, transport: n.Transport, outcome: outcomeFailed})
		r.log.Warn("kept notification dropped: its app is no longer configured", "app", e.App, "token", wire.TokenHash(n.DeviceID))
		return spool.Verdict{Done: true}
	}
	r.metrics.redeliveries.Inc()
	sendCtx, cancel := context.WithTimeout(ctx, st.timeout)
	res, _ := r.send(sendCtx, st, a, &n, providers.Attempt{Expires: e.Deadline(r.maxAge), Redelivery: true})
	cancel()
	if egressMisconfigured(res) { // accepted long ago: kept until a reload fixes the egress, or max_age
		return spool.Verdict{RetryAfter: res.RetryAfter}
	}
	var outcome string
	level := r.audit
	switch res.Outcome {
	case providers.Delivered:
		outcome = outcomeDelivered
	case providers.TokenDead:
		// Mattermost got OK long ago and can no longer be told to drop the
		// device now: the next push to it is answered REMOVE.
		outcome, level = outcomeRemoved, slog.LevelInfo
		r.foundDead(ctx, a.name, n.DeviceID)
	case providers.Failed:
		outcome, level = outcomeFailed, slog.LevelWarn
	default:
		return spool.Verdict{RetryAfter: res.RetryAfter}
	}
	r.count(a, &n, typ, outcome, res.Reason, false)
	if r.log.Enabled(ctx, level) {
		attrs := []slog.Attr{slog.String("app", a.name), slog.String("provider", a.provider), slog.String("type", typ),
			slog.String("outcome", outcome), slog.String("token", wire.TokenHash(n.DeviceID)), slog.Int("attempt", attempt)}
		if res.Err != nil {
			attrs = append(attrs, slog.String("reason", res.Reason), slog.String("error", res.Err.Error()))
		}
		r.log.LogAttrs(ctx, level, "redelivery", attrs...)
	}
	return spool.Verdict{Done: true}
}

// expired counts a kept notification that outlived spool.max_age: it is
// dropped, never delivered late.
func (r *Relay) expired(e spool.Entry) {
	app, provider := e.App, "none"
	if a := r.state.Load().byName(e.App); a != nil {
		provider = a.provider
	}
	r.metrics.outcome(outcomeEvent{app: app, provider: provider, typ: wire.TypeLabel(e.Notification.Type),
		transport: e.Notification.Transport, outcome: outcomeExpired})
	r.log.Warn("kept notification expired undelivered", "app", app, "provider", provider,
		"token", wire.TokenHash(e.Notification.DeviceID), "age", time.Since(e.Accepted).Round(time.Second).String())
}

// consume points the spool's consumers at the apps configured now, and
// the first time, starts watching the dead tokens other relays find.
func (r *Relay) consume() error {
	r.watchDead()
	return r.spool.Consume(r.state.Load().appNames(), r.redeliver, r.expired)
}

// appNames lists the configured platform names, as the spool's consumers are keyed.
func (st *state) appNames() []string {
	names := make([]string, 0, len(st.apps)+1)
	for _, a := range st.all() {
		names = append(names, a.name)
	}
	return names
}
