package fcm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/oauth2"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// Reasons of our own, next to FCM's error codes (UNREGISTERED,
// SENDER_ID_MISMATCH, UNAVAILABLE, INTERNAL, QUOTA_EXCEEDED,
// INVALID_ARGUMENT, THIRD_PARTY_AUTH_ERROR), in providers.Result.Reason.
const (
	// ReasonTimeout: no answer before the context ended (deadline or cancel).
	ReasonTimeout = "timeout"
	// ReasonTransport: the connection failed (refused, reset, TLS, ...).
	ReasonTransport = "transport"
	// ReasonAuth: the OAuth token endpoint refused the service account or
	// failed, or FCM refused the access token.
	ReasonAuth = "auth"
	// ReasonEgressDenied: the FCM or token endpoint's host is not in
	// egress.allowed_hosts.
	ReasonEgressDenied = "egress_denied"
	// ReasonOther: a refusal FCM does not document.
	ReasonOther = "other"
)

// FCM's error codes (the FcmError detail), as Result.Reason.
const (
	codeUnregistered     = "UNREGISTERED"
	codeSenderIDMismatch = "SENDER_ID_MISMATCH"
	codeUnavailable      = "UNAVAILABLE"
	codeInternal         = "INTERNAL"
	codeQuotaExceeded    = "QUOTA_EXCEEDED"
	codeInvalidArgument  = "INVALID_ARGUMENT"
	codeThirdPartyAuth   = "THIRD_PARTY_AUTH_ERROR"
)

// maxQuote bounds what an error quotes of Google's answers.
const maxQuote = 200

// classify turns the SDK's error for a Send into a Result. err is the SDK's
// own, unwrapped (its predicates assert its type); a holds what the
// transport saw, which the SDK's errors lose.
func (p *Provider) classify(ctx context.Context, err error, a *attempt, token string) providers.Result {
	if a.permanent != nil {
		return *a.permanent
	}
	if resp := errorutils.HTTPResponse(err); resp != nil {
		return answerResult(err, resp, token)
	}
	// No answer to show: the SDK ran out of retries on a transport error,
	// or the context ended (it then returns ctx.Err() as is), or it refused
	// the message before sending.
	switch {
	case a.status == http.StatusOK:
		// Not FCM's answer (a proxy's?): the message may not have arrived.
		return providers.Retryable(ReasonOther, 0,
			scrub(fmt.Errorf("fcm: HTTP 200 from %s, but not FCM's answer: %s", p.host, quote(err)), token))
	case a.status != 0:
		// The context ended while the SDK waited to retry this answer.
		if a.retryAfter > 0 {
			return statusResult(a.status, a.retryAfter,
				fmt.Errorf("fcm: HTTP %d from %s, asking to retry after %v: beyond the deadline", a.status, p.host, a.retryAfter))
		}
		return statusResult(a.status, 0,
			fmt.Errorf("fcm: HTTP %d from %s until the deadline, the SDK's retries included", a.status, p.host))
	case a.token != nil:
		return *a.token
	case a.err != nil:
		return p.transportResult(a.err, token)
	case a.trips == 0 && ctx.Err() == nil:
		return providers.Permanent(ReasonOther, scrub(fmt.Errorf("fcm: message refused by the SDK: %s", quote(err)), token))
	}
	return p.transportResult(err, token)
}

// answerResult classifies an error answer from FCM.
func answerResult(err error, resp *http.Response, token string) providers.Result {
	var reason string
	switch {
	case messaging.IsUnregistered(err):
		return providers.Dead(codeUnregistered)
	case messaging.IsSenderIDMismatch(err):
		return providers.Dead(codeSenderIDMismatch)
	case messaging.IsUnavailable(err):
		reason = codeUnavailable
	case messaging.IsInternal(err):
		reason = codeInternal
	case messaging.IsQuotaExceeded(err):
		reason = codeQuotaExceeded
	case messaging.IsInvalidArgument(err):
		reason = codeInvalidArgument
	case messaging.IsThirdPartyAuthError(err):
		reason = codeThirdPartyAuth
	}
	code := reason
	if code == "" {
		code = platformCode(err)
	}
	var e error
	if code != "" {
		e = scrub(fmt.Errorf("fcm: %s: %s", code, answerText(err, resp.StatusCode)), token)
	} else {
		e = scrub(fmt.Errorf("fcm: %s", answerText(err, resp.StatusCode)), token)
	}
	after := providers.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	if reason != "" {
		switch reason {
		case codeUnavailable, codeInternal, codeQuotaExceeded:
			return providers.Retryable(reason, after, e)
		}
		return providers.Permanent(reason, e)
	}
	return statusResult(resp.StatusCode, after, e)
}

// statusResult classifies an answer without an FCM error code (a proxy's
// or gateway's, or Google's own for a request FCM did not get to) by its
// HTTP status.
func statusResult(status int, after time.Duration, err error) providers.Result {
	switch {
	case status == http.StatusTooManyRequests:
		return providers.Retryable(codeQuotaExceeded, after, err)
	case status == http.StatusServiceUnavailable:
		return providers.Retryable(codeUnavailable, after, err)
	case status == http.StatusInternalServerError:
		return providers.Retryable(codeInternal, after, err)
	case status >= 500, status == http.StatusOK: // 200: not FCM's answer; it may not have arrived
		return providers.Retryable(ReasonOther, after, err)
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return providers.Permanent(ReasonAuth, err)
	case status == http.StatusBadRequest:
		return providers.Permanent(codeInvalidArgument, err)
	}
	return providers.Permanent(ReasonOther, err)
}

// platformCode names Google's status of an error answer (NOT_FOUND,
// PERMISSION_DENIED, ...); "" when there is none.
func platformCode(err error) string {
	for _, c := range []struct {
		is   func(error) bool
		name string
	}{
		{errorutils.IsInvalidArgument, "INVALID_ARGUMENT"},
		{errorutils.IsUnauthenticated, "UNAUTHENTICATED"},
		{errorutils.IsPermissionDenied, "PERMISSION_DENIED"},
		{errorutils.IsNotFound, "NOT_FOUND"},
		{errorutils.IsResourceExhausted, "RESOURCE_EXHAUSTED"},
		{errorutils.IsInternal, "INTERNAL"},
		{errorutils.IsUnavailable, "UNAVAILABLE"},
		{errorutils.IsFailedPrecondition, "FAILED_PRECONDITION"},
	} {
		if c.is(err) {
			return c.name
		}
	}
	return ""
}

// answerText is what an error answer says: Google's message, or, for an
// answer not in Google's format, the status and the start of the body.
func answerText(err error, status int) string {
	s := quote(err)
	rest, ok := strings.CutPrefix(s, "unexpected http response with status: "+strconv.Itoa(status))
	if !ok {
		return s
	}
	if rest = strings.TrimSpace(rest); rest == "" {
		return "HTTP " + strconv.Itoa(status) + " without a body"
	}
	return "HTTP " + strconv.Itoa(status) + ": " + rest
}

// transportResult classifies a Send whose last round trip got no answer
// from FCM: err is that round trip's error, or the context's.
func (p *Provider) transportResult(err error, token string) providers.Result {
	// http.Client's *url.Error leads with the URL: keep what went wrong.
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return providers.Retryable(ReasonTimeout, 0,
			scrub(fmt.Errorf("fcm: post to %s: no answer before the deadline: %w", p.host, inner), token))
	case errors.Is(err, context.Canceled):
		return providers.Retryable(ReasonTimeout, 0,
			scrub(fmt.Errorf("fcm: post to %s: canceled: %w", p.host, inner), token))
	}
	return providers.Retryable(ReasonTransport, 0, scrub(fmt.Errorf("fcm: post to %s: %w", p.host, inner), token))
}

// result classifies a failed token fetch: a refusal by the token endpoint
// (invalid_grant, ...) or by the egress allowlist is permanent; a 429 or
// 5xx, a network error or the end of the context is not.
func (c *tokenCache) result(err error) providers.Result {
	var re *oauth2.RetrieveError
	switch {
	case errors.As(err, &re) && re.Response != nil:
		status := re.Response.StatusCode
		e := fmt.Errorf("fcm: OAuth token endpoint %s refused the service account: %s (HTTP %d)",
			c.host, oauthProblem(re.Body), status)
		if status == http.StatusTooManyRequests || status >= 500 {
			return providers.Retryable(ReasonAuth, providers.ParseRetryAfter(re.Response.Header.Get("Retry-After"), time.Now()), e)
		}
		return providers.Permanent(ReasonAuth, e)
	case errors.Is(err, context.DeadlineExceeded):
		return providers.Retryable(ReasonTimeout, 0, fmt.Errorf("fcm: no OAuth token from %s before the deadline: %w", c.host, err))
	case errors.Is(err, context.Canceled):
		return providers.Retryable(ReasonTimeout, 0, fmt.Errorf("fcm: waiting for an OAuth token from %s: %w", c.host, err))
	case !c.eg.Allowed(c.hostname):
		// The oauth2 library keeps only the text of the egress refusal.
		return providers.Permanent(ReasonEgressDenied,
			fmt.Errorf("fcm: OAuth token endpoint: egress to %s refused: %w", c.hostname, egress.ErrHostNotAllowed))
	}
	// oauth2 says `oauth2: cannot fetch token: Post "<token_uri>": <what>`.
	msg := err.Error()
	if _, what, ok := strings.Cut(msg, `": `); ok {
		msg = what
	}
	return providers.Retryable(ReasonTransport, 0,
		fmt.Errorf("fcm: fetching an OAuth token from %s: %s", c.host, wire.TruncateUTF8(msg, maxQuote)))
}

// oauthProblem quotes an OAuth 2.0 error answer ({"error": "invalid_grant",
// "error_description": "..."}), bounded.
func oauthProblem(body []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return "no OAuth error in the answer"
	}
	s := e.Error
	if e.Description != "" {
		s += ": " + e.Description
	}
	return oneLine(s)
}

// quote returns err's text on one line, bounded: Google's message for an
// answer in its JSON format, the start of the body for another one.
func quote(err error) string { return oneLine(err.Error()) }

func oneLine(s string) string {
	return wire.TruncateUTF8(strings.Join(strings.Fields(s), " "), maxQuote)
}

// scrub replaces every occurrence of the device token in err's text by
// "token:" and its hash (wire.TokenHash). An error that held the token
// keeps answering errors.Is for what it wrapped, but no longer unwraps to it.
func scrub(err error, token string) error {
	msg := err.Error()
	if token == "" || !strings.Contains(msg, token) {
		return err
	}
	return &scrubbedError{msg: strings.ReplaceAll(msg, token, "token:"+wire.TokenHash(token)), inner: err}
}

type scrubbedError struct {
	msg   string
	inner error
}

func (e *scrubbedError) Error() string { return e.msg }

func (e *scrubbedError) Is(target error) bool { return errors.Is(e.inner, target) }
