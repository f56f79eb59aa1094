package fcm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
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

// The FcmError detail of Google's error answers, and APNS_AUTH_ERROR, the
// older name of THIRD_PARTY_AUTH_ERROR (the SDK takes both for it).
const (
	fcmErrorType = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
	codeAPNSAuth = "APNS_AUTH_ERROR"
)

// maxAnswer bounds how much of an answer's body is read: FCM's own answers
// are well below it.
const maxAnswer = 4 << 10

// answerBufs holds buffers of maxAnswer bytes for reading answers.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, maxAnswer); return &b }}

// readAtMost reads r into buf until r ends or buf is full, and returns what
// it read. A body longer than buf is cut, not an error.
func readAtMost(r io.Reader, buf []byte) ([]byte, error) {
	n, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return buf[:n], err
}

// classify turns an answer to a send into a Result: its HTTP status, its
// Retry-After header and the start of its body (at most maxAnswer bytes).
// host names the FCM endpoint; token is the device token, kept out of the
// error. The reasons are constants, never the answer's own bytes.
func classify(status int, retryAfter string, body []byte, host, token string) providers.Result {
	if status == http.StatusOK {
		if isFCMAnswer(body) {
			return providers.Delivery()
		}
		// Not FCM's answer (a proxy's, a captive portal's): the message
		// may not have arrived.
		return providers.Retryable(ReasonOther, 0,
			scrub(fmt.Errorf("fcm: HTTP 200 from %s, but not FCM's answer: %s", host, bodyText(body, token)), token))
	}
	after := providers.ParseRetryAfter(retryAfter, time.Now())
	// Google's error format (google.rpc.Status), decoded as the SDK does:
	// what decodes is used, a body that is not JSON leaves it empty.
	var g googleError
	json.Unmarshal(body, &g)
	// FCM's error code wins over Google's status, as in the SDK.
	var reason string
	switch g.fcmCode() {
	case codeUnregistered:
		return providers.Dead(codeUnregistered)
	case codeSenderIDMismatch:
		return providers.Dead(codeSenderIDMismatch)
	case codeUnavailable:
		reason = codeUnavailable
	case codeInternal:
		reason = codeInternal
	case codeQuotaExceeded:
		reason = codeQuotaExceeded
	case codeInvalidArgument:
		reason = codeInvalidArgument
	case codeThirdPartyAuth, codeAPNSAuth:
		reason = codeThirdPartyAuth
	}
	if reason == "" && g.Error.Status == "" && g.Error.Message == "" && status >= 400 && status < 500 && status != http.StatusTooManyRequests {
		// Google's refusals carry its error object: this one is from
		// something else (a reverse proxy's 404, a gateway's 403), or the
		// URL is one no Google service knows.
		return providers.Permanent(egress.ReasonWrongEndpoint, scrub(
			fmt.Errorf("fcm: %w", egress.NotProvider("FCM", status, host, "apps[].fcm.endpoint", wire.TruncateUTF8(bodyText(body, token), 64))), token))
	}
	code := reason
	if code == "" {
		code = platformCode(g.Error.Status, status)
	}
	text := answerText(g.Error.Message, status, body, token)
	var e error
	if code != "" {
		e = scrub(fmt.Errorf("fcm: %s: %s", code, text), token)
	} else {
		e = scrub(fmt.Errorf("fcm: %s", text), token)
	}
	switch reason {
	case "":
		return statusResult(status, after, e)
	case codeQuotaExceeded:
		return providers.Throttled(reason, after, e)
	case codeUnavailable, codeInternal:
		return providers.Retryable(reason, after, e)
	}
	return providers.Permanent(reason, e)
}

// isFCMAnswer reports whether body is FCM's answer to a send it took:
// {"name": "projects/<project>/messages/<id>"}.
func isFCMAnswer(body []byte) bool {
	if name, ok := plainName(body); ok {
		return name
	}
	var a struct {
		Name string `json:"name"`
	}
	return jsonv2.Unmarshal(body, &a) == nil && a.Name != ""
}

// plainName reads the answer FCM gives every delivered push, an object
// whose one member is "name" with a string of printable ASCII, without
// the decoder, which took 2% of the relay's CPU. It reports whether the
// name is non-empty, and ok false for any other body, which the decoder
// then reads.
func plainName(body []byte) (nonEmpty, ok bool) {
	rest := body
	for _, token := range []string{`{`, `"name"`, `:`, `"`} {
		if rest, ok = bytes.CutPrefix(skipSpace(rest), []byte(token)); !ok {
			return false, false
		}
	}
	end := 0
	for ; end < len(rest) && rest[end] != '"'; end++ {
		if c := rest[end]; c < 0x20 || c > 0x7e || c == '\\' {
			return false, false // escapes, control or non-ASCII bytes: the decoder's job
		}
	}
	if end == len(rest) {
		return false, false
	}
	tail, ok := bytes.CutPrefix(skipSpace(rest[end+1:]), []byte(`}`))
	if !ok || len(skipSpace(tail)) > 0 {
		return false, false
	}
	return end > 0, true
}

// skipSpace drops leading JSON whitespace.
func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}

// googleError is the part of Google's error answer the provider reads:
// {"error":{"code":404,"message":"...","status":"NOT_FOUND",
// "details":[{"@type":"...FcmError","errorCode":"UNREGISTERED"}, ...]}}.
type googleError struct {
	Error struct {
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type      string `json:"@type"`
			ErrorCode string `json:"errorCode"`
		} `json:"details"`
	} `json:"error"`
}

// fcmCode returns the errorCode of the first FcmError detail, as the SDK
// does; "" when there is none.
func (g *googleError) fcmCode() string {
	for _, d := range g.Error.Details {
		if d.Type == fcmErrorType {
			return d.ErrorCode
		}
	}
	return ""
}

// statusResult classifies an answer without an FCM error code (a proxy's
// or gateway's, or Google's own for a request FCM did not get to) by its
// HTTP status.
func statusResult(status int, after time.Duration, err error) providers.Result {
	switch {
	case status == http.StatusTooManyRequests:
		return providers.Throttled(codeQuotaExceeded, after, err)
	case status == http.StatusServiceUnavailable:
		return providers.Retryable(codeUnavailable, after, err)
	case status == http.StatusInternalServerError:
		return providers.Retryable(codeInternal, after, err)
	case status >= 500:
		return providers.Retryable(ReasonOther, after, err)
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return providers.Permanent(ReasonAuth, err)
	case status == http.StatusBadRequest:
		return providers.Permanent(codeInvalidArgument, err)
	}
	return providers.Permanent(ReasonOther, err)
}

// platformCodes are the Google statuses an error names (NOT_FOUND,
// PERMISSION_DENIED, ...): those the SDK has predicates for.
var platformCodes = []string{
	"INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND",
	"RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE", "FAILED_PRECONDITION",
}

// statusCodes are the Google statuses the SDK assumes for an answer that
// names none.
var statusCodes = map[int]string{
	http.StatusBadRequest:          "INVALID_ARGUMENT",
	http.StatusUnauthorized:        "UNAUTHENTICATED",
	http.StatusForbidden:           "PERMISSION_DENIED",
	http.StatusNotFound:            "NOT_FOUND",
	http.StatusTooManyRequests:     "RESOURCE_EXHAUSTED",
	http.StatusInternalServerError: "INTERNAL",
	http.StatusServiceUnavailable:  "UNAVAILABLE",
}

// platformCode names Google's status of an error answer: the one the body
// gives, else the usual one for the HTTP status; "" when it is none of
// platformCodes. The result is a constant, never the body's own text.
func platformCode(given string, status int) string {
	if given == "" {
		given = statusCodes[status]
	}
	for _, c := range platformCodes {
		if c == given {
			return c
		}
	}
	return ""
}

// answerText is what an error answer says, on one line, bounded and
// without the device token: Google's message, or, for an answer not in
// Google's format, the status and the start of the body.
func answerText(message string, status int, body []byte, token string) string {
	switch {
	case message != "":
		return oneLine(hideToken(message, token))
	case len(bytes.TrimSpace(body)) == 0:
		return "HTTP " + strconv.Itoa(status) + " without a body"
	}
	return "HTTP " + strconv.Itoa(status) + ": " + bodyText(body, token)
}

// bodyText quotes the start of a body on one line, bounded and without the
// device token.
func bodyText(body []byte, token string) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return "an empty body"
	}
	return oneLine(hideToken(string(body), token))
}

// hideToken replaces the device token in s as scrub does. Quotes are hidden
// before they are bounded, so that a cut cannot leave a piece of the token.
func hideToken(s, token string) string {
	if token == "" || !strings.Contains(s, token) {
		return s
	}
	return strings.ReplaceAll(s, token, "token:"+wire.TokenHash(token))
}

// transportResult classifies a send that got no answer from FCM, or not all
// of it: err is the round trip's error, or the body's.
func (p *Provider) transportResult(ctx context.Context, err error, token string) providers.Result {
	// An *url.Error leads with the URL: keep what went wrong.
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	var netErr net.Error
	switch {
	case errors.Is(err, egress.ErrHostNotAllowed):
		return providers.Permanent(ReasonEgressDenied, scrub(fmt.Errorf("fcm: %w", inner), token))
	case egress.AsMisconfig(err) != nil: // waiting does not help; a change of configuration does
		return providers.Permanent(egress.AsMisconfig(err).Reason, scrub(fmt.Errorf("fcm: %w", egress.AsMisconfig(err)), token))
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout(),
		errors.Is(ctx.Err(), context.DeadlineExceeded):
		return providers.Retryable(ReasonTimeout, 0,
			scrub(fmt.Errorf("fcm: post to %s: no answer before the deadline: %w", p.host, inner), token))
	case errors.Is(err, context.Canceled), errors.Is(ctx.Err(), context.Canceled):
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
		after := providers.ParseRetryAfter(re.Response.Header.Get("Retry-After"), time.Now())
		if status == http.StatusTooManyRequests {
			return providers.Throttled(ReasonAuth, after, e)
		}
		if status >= 500 {
			return providers.Retryable(ReasonAuth, after, e)
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
	case c.eg.Misconfigured(err, c.host) != nil: // the same: the proxy refused us, a certificate is not trusted...
		me := c.eg.Misconfigured(err, c.host)
		return providers.Permanent(me.Reason, fmt.Errorf("fcm: OAuth token endpoint %s: %w", c.host, me))
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

// oneLine returns s on one line, bounded.
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
	return &scrubbedError{msg: hideToken(msg, token), inner: err}
}

type scrubbedError struct {
	msg   string
	inner error
}

func (e *scrubbedError) Error() string { return e.msg }

func (e *scrubbedError) Is(target error) bool { return errors.Is(e.inner, target) }
