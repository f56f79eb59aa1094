// Package providers defines what every push provider (APNs, FCM, an upstream
// push proxy) looks like to the relay: one Send that classifies its outcome.
// Retries, spooling and metrics live once, in the relay, not in providers.
//
// It owns the Provider interface, the outcome classification and the
// errors every provider shares. Imports: relay/wire only. No provider
// package knows of ingress, the policy or the spool; each imports only
// providers, providers/appconfig (the YAML types of its section),
// providers/egress, providers/jsonobject and relay/wire.
package providers

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// Outcome is how a send ended, from the relay's point of view.
type Outcome int

const (
	// Delivered: the provider accepted the notification.
	Delivered Outcome = iota
	// TokenDead: the provider says the device token will never work again;
	// the Mattermost server is told to REMOVE the device.
	TokenDead
	// Retry: a transient failure (timeout, connection error, 429, 5xx);
	// the same notification may succeed later.
	Retry
	// Failed: a permanent failure (bad topic, bad credentials, bad payload);
	// retrying cannot help.
	Failed
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case TokenDead:
		return "token_dead"
	case Retry:
		return "retry"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Result is a classified send.
type Result struct {
	Outcome Outcome
	// Reason is the provider's reason code (Apple's "BadDeviceToken", Google's
	// "UNREGISTERED", or "timeout", "transport", ...): a fixed vocabulary,
	// safe for a metric label. Empty when delivered.
	Reason string
	// RetryAfter is the wait the provider asked for (Retry-After), if any.
	RetryAfter time.Duration
	// Throttle marks a Retry the provider answered because the sender goes
	// too fast (HTTP 429, QUOTA_EXCEEDED): retry later, not at once. See
	// IsThrottle.
	Throttle bool
	// Err says what failed, for the FAIL answer and the log. It never holds
	// a device token or notification content.
	Err error
}

// Provider sends one notification, already stripped by the policy, to one
// push service. Implementations must honour ctx's deadline and be safe for
// concurrent use.
type Provider interface {
	// Send delivers n and classifies the outcome. It must not keep n, or
	// anything n points to by way of a slice, once it returns: the relay
	// reuses n for the next notification.
	Send(ctx context.Context, n *wire.Notification) Result
}

// Delivery is the Result of a successful send.
func Delivery() Result { return Result{Outcome: Delivered} }

// Dead is the Result of a send the provider refused because the token is dead.
func Dead(reason string) Result {
	return Result{Outcome: TokenDead, Reason: reason, Err: fmt.Errorf("device token rejected: %s", reason)}
}

// Retryable is the Result of a transient failure.
func Retryable(reason string, after time.Duration, err error) Result {
	return Result{Outcome: Retry, Reason: reason, RetryAfter: after, Err: err}
}

// Throttled is the Result of a refusal because the sender goes too fast
// (HTTP 429, FCM's QUOTA_EXCEEDED, APNs' TooManyRequests): worth retrying,
// but after the wait asked for (after, 0 when none), never at once.
func Throttled(reason string, after time.Duration, err error) Result {
	return Result{Outcome: Retry, Reason: reason, RetryAfter: after, Throttle: true, Err: err}
}

// IsThrottle reports whether r asks the relay to slow down rather than to
// try again at once: r.Throttle, or a Retry-After, or one of the reasons
// the providers give a 429 (APNs' TooManyRequests, FCM's QUOTA_EXCEEDED,
// an upstream push proxy's http_4xx, which only a 429 makes retryable).
func IsThrottle(r Result) bool {
	if r.Outcome != Retry {
		return false
	}
	if r.Throttle || r.RetryAfter > 0 {
		return true
	}
	switch r.Reason {
	case "TooManyRequests", "QUOTA_EXCEEDED", "http_4xx":
		return true
	}
	return false
}

// Permanent is the Result of a failure that retrying cannot fix.
func Permanent(reason string, err error) Result {
	return Result{Outcome: Failed, Reason: reason, Err: err}
}

// Attempt describes one send of a notification. The relay attaches it to
// the context it passes to Send; providers use it to tell the push service
// how long the notification is worth keeping and to make a repeat harmless.
type Attempt struct {
	// Expires is when the notification stops being worth delivering
	// (accepted + spool.max_age): APNs apns-expiration, FCM android.ttl.
	Expires time.Time
	// Redelivery marks a send that follows an earlier attempt which may
	// have reached the device (a timeout is ambiguous): APNs sends it with
	// apns-collapse-id = ack_id so the phone shows it once.
	Redelivery bool
}

type attemptKey struct{}

// WithAttempt returns a context carrying a.
func WithAttempt(ctx context.Context, a Attempt) context.Context {
	return context.WithValue(ctx, attemptKey{}, a)
}

// AttemptFrom returns the Attempt ctx carries, if any.
func AttemptFrom(ctx context.Context) (Attempt, bool) {
	a, ok := ctx.Value(attemptKey{}).(Attempt)
	return a, ok
}

// ParseRetryAfter reads a Retry-After header value, delay-seconds or an
// HTTP date, as a wait from now; 0 when absent, past or unreadable.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// AckError is why forwarding a delivery receipt failed. Reason is a fixed
// vocabulary, safe for a metric label (ack_timeout, ack_transport,
// ack_egress_denied, ack_http_4xx, ack_http_5xx or ack_other); the relay
// counts it under that reason.
type AckError struct {
	Reason string
	Err    error
}

// Error says what failed; it names the host, never a URL path.
func (e *AckError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *AckError) Unwrap() error { return e.Err }
