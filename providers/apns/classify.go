package apns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sideshow/apns2"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// Reasons of our own, next to Apple's reason codes, in providers.Result.Reason.
const (
	// ReasonTimeout: no answer before the context's deadline.
	ReasonTimeout = "timeout"
	// ReasonCanceled: the caller gave up (context canceled) before an answer.
	ReasonCanceled = "canceled"
	// ReasonTransport: the connection failed (refused, reset, TLS, GOAWAY, ...).
	ReasonTransport = "transport"
	// ReasonEgressDenied: the gateway's host is not in egress.allowed_hosts.
	ReasonEgressDenied = "egress_denied"
	// The other misconfigurations of the egress path (egress.ReasonProxyAuth,
	// ...) are Permanent with the egress's own reason.
	// ReasonOther: a refusal whose reason Apple does not document.
	ReasonOther = "other"
)

// reasonLabel maps Apple's reason onto the fixed vocabulary of
// Result.Reason: a documented reason code as is, else ReasonOther. The
// returned string is a constant, never the response's own bytes.
func reasonLabel(reason string, status int) string {
	if r, ok := knownReasons[reason]; ok {
		return r
	}
	if reason == "" {
		// No reason (a proxy or gateway in between answered): name the
		// usual one for the retryable statuses.
		switch status {
		case http.StatusTooManyRequests:
			return apns2.ReasonTooManyRequests
		case http.StatusInternalServerError:
			return apns2.ReasonInternalServerError
		case http.StatusServiceUnavailable:
			return apns2.ReasonServiceUnavailable
		}
	}
	return ReasonOther
}

// knownReasons interns the documented reasons, so a label never aliases the
// memory of a response body.
var knownReasons = func() map[string]string {
	m := map[string]string{}
	for _, r := range []string{
		apns2.ReasonBadCollapseID, apns2.ReasonBadDeviceToken, apns2.ReasonBadExpirationDate,
		apns2.ReasonBadMessageID, apns2.ReasonBadPriority, apns2.ReasonBadTopic,
		apns2.ReasonDeviceTokenNotForTopic, apns2.ReasonDuplicateHeaders, apns2.ReasonIdleTimeout,
		apns2.ReasonInvalidPushType, apns2.ReasonMissingDeviceToken, apns2.ReasonMissingTopic,
		apns2.ReasonPayloadEmpty, apns2.ReasonTopicDisallowed, apns2.ReasonBadCertificate,
		apns2.ReasonBadCertificateEnvironment, apns2.ReasonExpiredProviderToken, apns2.ReasonForbidden,
		apns2.ReasonInvalidProviderToken, apns2.ReasonMissingProviderToken, apns2.ReasonBadPath,
		apns2.ReasonMethodNotAllowed, apns2.ReasonExpiredToken, apns2.ReasonUnregistered,
		apns2.ReasonPayloadTooLarge, apns2.ReasonTooManyProviderTokenUpdates, apns2.ReasonTooManyRequests,
		apns2.ReasonInternalServerError, apns2.ReasonServiceUnavailable, apns2.ReasonShutdown,
		"UnrelatedKeyIdInToken", "BadEnvironmentKeyInToken",
	} {
		m[r] = r
	}
	return m
}()

// classify turns APNs' answer into a Result. host is the endpoint's
// host[:port].
func classify(status int, reason string, retryAfter time.Duration, host, deviceToken string) providers.Result {
	if status == apns2.StatusSent {
		return providers.Delivery()
	}
	label := reasonLabel(reason, status)
	switch label {
	case apns2.ReasonBadDeviceToken, apns2.ReasonUnregistered,
		apns2.ReasonMissingDeviceToken, apns2.ReasonDeviceTokenNotForTopic:
		return providers.Dead(label)
	}
	if reason == "" && status >= 400 && status < 500 && status != http.StatusTooManyRequests {
		// APNs gives every refusal a JSON reason: this one is from
		// something else (a reverse proxy's 404, a gateway's 403).
		return providers.Permanent(egress.ReasonWrongEndpoint,
			fmt.Errorf("apns: %w", egress.NotProvider("APNs", status, host, "apps[].apns.endpoint", "")))
	}
	err := statusError(status, reason, label, deviceToken)
	switch {
	case status == http.StatusTooManyRequests, status >= 500,
		label == apns2.ReasonExpiredProviderToken, // signed anew on the next attempt
		label == apns2.ReasonIdleTimeout:          // the connection idled out; a new one will do
		return providers.Retryable(label, retryAfter, err)
	}
	return providers.Permanent(label, err)
}

// statusError describes a refusal: "apns: TopicDisallowed (HTTP 400)".
func statusError(status int, reason, label, deviceToken string) error {
	switch {
	case label != ReasonOther:
		return fmt.Errorf("apns: %s (HTTP %d)", label, status)
	case reason == "":
		return fmt.Errorf("apns: HTTP %d without a reason", status)
	}
	// An undocumented reason: quote a bounded, token-free form of it.
	return scrub(fmt.Errorf("apns: %q (HTTP %d)", wire.TruncateUTF8(reason, 64), status), deviceToken)
}

// transportResult classifies a request that got no answer from APNs.
func (p *Provider) transportResult(ctx context.Context, err error, deviceToken, sentToken string) providers.Result {
	// A *url.Error's text holds the URL and so the device token (the
	// transport returns none today, but http.Client would): keep only what
	// went wrong.
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	var netErr net.Error
	var mis *egress.MisconfigError
	switch {
	case errors.Is(err, egress.ErrHostNotAllowed):
		return providers.Permanent(ReasonEgressDenied, scrub(fmt.Errorf("apns: %w", inner), deviceToken, sentToken))
	case errors.As(err, &mis):
		// A proxy refusing the credentials, a certificate not trusted...:
		// waiting does not help, a change of configuration does.
		return providers.Permanent(mis.Reason, scrub(fmt.Errorf("apns: %w", mis), deviceToken, sentToken))
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return providers.Retryable(ReasonTimeout, 0,
			scrub(fmt.Errorf("apns: post to %s: no answer before the deadline: %w", p.url.Host, inner), deviceToken, sentToken))
	case errors.Is(ctx.Err(), context.Canceled), errors.Is(err, context.Canceled):
		return providers.Retryable(ReasonCanceled, 0,
			scrub(fmt.Errorf("apns: post to %s: canceled: %w", p.url.Host, inner), deviceToken, sentToken))
	}
	return providers.Retryable(ReasonTransport, 0,
		scrub(fmt.Errorf("apns: post to %s: %w", p.url.Host, inner), deviceToken, sentToken))
}

// scrub replaces every occurrence of the device tokens in err's text by the
// hash of the first (wire.TokenHash). An error that held a token keeps
// answering errors.Is for what it wrapped, but no longer unwraps to it.
func scrub(err error, tokens ...string) error {
	msg := err.Error()
	changed := false
	for _, t := range tokens {
		if t != "" && strings.Contains(msg, t) {
			msg = strings.ReplaceAll(msg, t, "token:"+wire.TokenHash(tokens[0]))
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &scrubbedError{msg: msg, inner: err}
}

type scrubbedError struct {
	msg   string
	inner error
}

func (e *scrubbedError) Error() string { return e.msg }

func (e *scrubbedError) Is(target error) bool { return errors.Is(e.inner, target) }
