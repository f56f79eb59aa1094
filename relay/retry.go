package relay

import (
	"context"
	"log/slog"
	"time"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// deliver makes the direct attempts at n that one delivery.timeout allows:
// one, and a quick second one when the first met a transient failure
// (quickRetry), so that the answer the Mattermost server gets is the
// provider's verdict (REMOVE for a dead token) rather than OK for a
// notification kept in the spool. A third attempt follows a second
// transient failure only while failures are isolated (fewer than
// breakerMinFailures in a row): under 5% random 503s, two attempts leave
// 0.25% of the notifications to the spool and three 0.0125%, while a
// provider that fails everything gets no more than twice its load until
// the breaker opens. Every attempt after the first is marked as a
// redelivery: were an earlier one to have reached the phone after all,
// the phone shows it once.
func (r *Relay) deliver(ctx context.Context, st *state, a *app, n *wire.Notification, at providers.Attempt) (providers.Result, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	res, elapsed := r.send(ctx, st, a, n, at)
	for retry := 1; retry <= maxQuickRetries && quickRetry(ctx, res, st.timeout) && !a.breaker.isOpen(); retry++ {
		if retry > 1 && a.breaker.run() >= breakerMinFailures {
			break // not an isolated failure: do not pile on
		}
		r.metrics.quickRetry(a.provider)
		at.Redelivery = true
		var more time.Duration
		res, more = r.send(ctx, st, a, n, at)
		elapsed += more
	}
	return res, elapsed
}

// maxQuickRetries bounds the quick attempts after the first.
const maxQuickRetries = 2

// quickRetryMinLeft is the share of delivery.timeout that must be left for
// a quick second attempt to be worth making.
const quickRetryMinLeft = 4 // a quarter

// quickRetry reports whether res, from an attempt within ctx (whose
// deadline is delivery.timeout away from its start), deserves a quick
// second attempt: a transient failure (a 5xx, a stream reset, a lost
// connection: providers.Retry) that leaves a quarter of the deadline, and
// neither a throttle (a 429, QUOTA_EXCEEDED, anything with a Retry-After:
// the provider asked us to wait) nor a timeout (the provider is slow; a
// second attempt would wait as long).
func quickRetry(ctx context.Context, res providers.Result, timeout time.Duration) bool {
	if res.Outcome != providers.Retry || res.RetryAfter > 0 || providers.IsThrottle(res) {
		return false
	}
	switch res.Reason {
	case "timeout", "canceled":
		return false
	}
	deadline, ok := ctx.Deadline()
	return ok && ctx.Err() == nil && time.Until(deadline) >= timeout/quickRetryMinLeft
}

// rememberedDead answers a push to a device token a redelivery found dead
// within spool.max_age: REMOVE at once, without calling the provider,
// counted as removed with the reason remembered_dead. It reports false
// when the token is not remembered.
func (r *Relay) rememberedDead(ctx context.Context, a *app, n *wire.Notification, typ string) bool {
	now := time.Now()
	r.dead.maybeSweep(now)
	if !r.dead.has(deadKeyOf(a.name, n.DeviceID), now) {
		return false
	}
	r.metrics.outcome(outcomeEvent{app: a.name, provider: a.provider, typ: typ, transport: n.Transport,
		outcome: outcomeRemoved, reason: reasonRememberedDead, direct: true})
	r.log.LogAttrs(ctx, slog.LevelInfo, "push", slog.String("app", a.name), slog.String("provider", a.provider),
		slog.String("type", typ), slog.String("outcome", outcomeRemoved), slog.String("token", wire.TokenHash(n.DeviceID)),
		slog.String("reason", reasonRememberedDead))
	return true
}

// reasonRememberedDead is the reason of a REMOVE answered from the memory
// of dead tokens.
const reasonRememberedDead = "remembered_dead"

// foundDead remembers a device token a redelivery found dead: in this
// relay's memory at once, and in the spool's bucket for the relays that
// share it (and for this one after a restart).
func (r *Relay) foundDead(ctx context.Context, app, token string) {
	k := deadKeyOf(app, token)
	now := time.Now()
	r.dead.add(k, now, now)
	if err := r.shared.remember(ctx, k); err != nil {
		r.log.Warn("dead token not shared through the spool; this relay remembers it", "app", app,
			"token", wire.TokenHash(token), "error", err.Error())
	}
}
