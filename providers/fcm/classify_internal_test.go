package fcm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/relay/wire"
)

func TestScrub(t *testing.T) {
	const token = "fcm-token-abc123"
	inner := errors.New("boom")
	err := scrub(errors.Join(errors.New("refused "+token+" twice: "+token), inner), token)
	want := "refused token:" + wire.TokenHash(token) + " twice: token:" + wire.TokenHash(token) + "\nboom"
	if err.Error() != want {
		t.Errorf("scrub = %q, want %q", err, want)
	}
	if !errors.Is(err, inner) {
		t.Error("a scrubbed error no longer answers errors.Is for what it wrapped")
	}
	if errors.Unwrap(err) != nil {
		t.Error("a scrubbed error unwraps to the text that held the token")
	}
	clean := errors.New("nothing to hide")
	if scrub(clean, token) != clean || scrub(clean, "") != clean {
		t.Error("scrub changed an error without the token")
	}
}

func TestOAuthProblem(t *testing.T) {
	for in, want := range map[string]string{
		`{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`: "invalid_grant: Invalid JWT Signature.",
		`{"error":"unauthorized_client"}`:                                        "unauthorized_client",
		`<html>proxy error</html>`:                                               "no OAuth error in the answer",
	} {
		if got := oauthProblem([]byte(in)); got != want {
			t.Errorf("oauthProblem(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestStatusResult(t *testing.T) {
	e := errors.New("x")
	for _, tc := range []struct {
		status  int
		outcome string
		reason  string
	}{
		{429, "retry", "QUOTA_EXCEEDED"},
		{500, "retry", "INTERNAL"},
		{502, "retry", "other"},
		{503, "retry", "UNAVAILABLE"},
		{504, "retry", "other"},
		{400, "failed", "INVALID_ARGUMENT"},
		{401, "failed", "auth"},
		{403, "failed", "auth"},
		{404, "failed", "other"},
	} {
		r := statusResult(tc.status, 0, e)
		if r.Outcome.String() != tc.outcome || r.Reason != tc.reason {
			t.Errorf("statusResult(%d) = %v %q, want %s %q", tc.status, r.Outcome, r.Reason, tc.outcome, tc.reason)
		}
		// Only a 429 tells the relay to wait rather than try again at once.
		if r.Throttle != (tc.status == 429) {
			t.Errorf("statusResult(%d).Throttle = %v", tc.status, r.Throttle)
		}
	}
}

// TestQuotaExceededIsAThrottle: FCM's QUOTA_EXCEEDED, whatever the HTTP
// status says, asks the relay to slow down (no quick second attempt);
// UNAVAILABLE and INTERNAL do not.
func TestQuotaExceededIsAThrottle(t *testing.T) {
	for code, want := range map[string]bool{"QUOTA_EXCEEDED": true, "UNAVAILABLE": false, "INTERNAL": false} {
		body := []byte(`{"error":{"code":503,"message":"m","status":"UNAVAILABLE","details":[{"@type":"` + fcmErrorType + `","errorCode":"` + code + `"}]}}`)
		r := classify(503, "", body, "fcm.example", "tok")
		if r.Outcome != providers.Retry || r.Throttle != want || providers.IsThrottle(r) != want {
			t.Errorf("%s: %+v, want a retry with Throttle %v", code, r, want)
		}
	}
}

// TestTokenResultDenied: the oauth2 library keeps only the text of an
// egress refusal; the allowlist tells it apart from a network error.
func TestTokenResultDenied(t *testing.T) {
	eg, err := egress.New(egress.Config{}, []string{"fcm.googleapis.com"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &tokenCache{eg: eg, host: "oauth2.googleapis.com", hostname: "oauth2.googleapis.com"}
	r := c.result(errors.New(`oauth2: cannot fetch token: Post "https://oauth2.googleapis.com/token": egress to oauth2.googleapis.com refused`))
	if r.Outcome.String() != "failed" || r.Reason != ReasonEgressDenied || !errors.Is(r.Err, egress.ErrHostNotAllowed) {
		t.Errorf("result = %+v, want failed egress_denied", r)
	}
	c.hostname = "fcm.googleapis.com"
	r = c.result(errors.New(`oauth2: cannot fetch token: Post "https://fcm.googleapis.com/token": dial tcp: lookup fcm.googleapis.com: no such host`))
	if r.Outcome.String() != "retry" || r.Reason != ReasonTransport ||
		r.Err.Error() != "fcm: fetching an OAuth token from oauth2.googleapis.com: dial tcp: lookup fcm.googleapis.com: no such host" {
		t.Errorf("result = %+v, want a retryable transport error", r)
	}
}

// TestClassify: FCM's answers (and others') by status, Retry-After and
// body: outcome, reason, wait and what the error says.
func TestClassify(t *testing.T) {
	const token = "fcm-token-xyz789"
	gerr := func(code int, status, message string, fcmCodes ...string) string {
		details := ""
		for i, c := range fcmCodes {
			if i > 0 {
				details += ","
			}
			details += `{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"` + c + `"}`
		}
		return fmt.Sprintf(`{"error":{"code":%d,"message":%q,"status":%q,"details":[%s]}}`, code, message, status, details)
	}
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter string
		body       string
		outcome    providers.Outcome
		reason     string
		after      time.Duration
		err        string // the whole error text; "" for none
	}{
		{name: "delivered", status: 200, body: `{"name":"projects/p/messages/0:1%abc"}`, outcome: providers.Delivered},
		{name: "delivered, more members", status: 200, body: `{"x":[1,{}],"name":"projects/p/messages/1"}`, outcome: providers.Delivered},
		{name: "200 with an empty name", status: 200, body: `{"name":""}`, outcome: providers.Retry, reason: ReasonOther,
			err: `fcm: HTTP 200 from fcm.example:443, but not FCM's answer: {"name":""}`},
		{name: "200 with JSON but no name", status: 200, body: `{"ok":true}`, outcome: providers.Retry, reason: ReasonOther,
			err: `fcm: HTTP 200 from fcm.example:443, but not FCM's answer: {"ok":true}`},
		{name: "200 with HTML", status: 200, retryAfter: "5", body: "<html>\n  captive portal\n</html>", outcome: providers.Retry,
			reason: ReasonOther, err: "fcm: HTTP 200 from fcm.example:443, but not FCM's answer: <html> captive portal </html>"},
		{name: "200 without a body", status: 200, outcome: providers.Retry, reason: ReasonOther,
			err: "fcm: HTTP 200 from fcm.example:443, but not FCM's answer: an empty body"},
		{name: "200, truncated JSON", status: 200, body: `{"name":"projects/p/mess`, outcome: providers.Retry, reason: ReasonOther,
			err: `fcm: HTTP 200 from fcm.example:443, but not FCM's answer: {"name":"projects/p/mess`},

		{name: "unregistered", status: 404, body: gerr(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
			outcome: providers.TokenDead, reason: "UNREGISTERED", err: "device token rejected: UNREGISTERED"},
		{name: "sender id mismatch", status: 403, body: gerr(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"),
			outcome: providers.TokenDead, reason: "SENDER_ID_MISMATCH", err: "device token rejected: SENDER_ID_MISMATCH"},
		{name: "unavailable with Retry-After", status: 503, retryAfter: "17",
			body:    gerr(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"),
			outcome: providers.Retry, reason: "UNAVAILABLE", after: 17 * time.Second,
			err: "fcm: UNAVAILABLE: The service is currently unavailable."},
		{name: "internal", status: 500, body: gerr(500, "INTERNAL", "Internal error encountered.", "INTERNAL"),
			outcome: providers.Retry, reason: "INTERNAL", err: "fcm: INTERNAL: Internal error encountered."},
		{name: "quota exceeded", status: 429, retryAfter: "60",
			body:    gerr(429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages.", "QUOTA_EXCEEDED"),
			outcome: providers.Retry, reason: "QUOTA_EXCEEDED", after: time.Minute,
			err: "fcm: QUOTA_EXCEEDED: Quota exceeded for sending messages."},
		{name: "resource exhausted without details", status: 429, body: gerr(429, "RESOURCE_EXHAUSTED", "Quota exceeded."),
			outcome: providers.Retry, reason: "QUOTA_EXCEEDED", err: "fcm: RESOURCE_EXHAUSTED: Quota exceeded."},
		{name: "invalid argument", status: 400, retryAfter: "30",
			body:    gerr(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", "INVALID_ARGUMENT"),
			outcome: providers.Failed, reason: "INVALID_ARGUMENT",
			err: "fcm: INVALID_ARGUMENT: The registration token is not a valid FCM registration token"},
		{name: "third party auth", status: 401, body: gerr(401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", "THIRD_PARTY_AUTH_ERROR"),
			outcome: providers.Failed, reason: "THIRD_PARTY_AUTH_ERROR", err: "fcm: THIRD_PARTY_AUTH_ERROR: Auth error from APNS or Web Push Service"},
		{name: "APNS_AUTH_ERROR is THIRD_PARTY_AUTH_ERROR", status: 401, body: gerr(401, "UNAUTHENTICATED", "Auth error", "APNS_AUTH_ERROR"),
			outcome: providers.Failed, reason: "THIRD_PARTY_AUTH_ERROR", err: "fcm: THIRD_PARTY_AUTH_ERROR: Auth error"},

		// The FcmError code wins over Google's status and the HTTP status.
		{name: "errorCode over status: UNREGISTERED on a 400", status: 400,
			body:    gerr(400, "INVALID_ARGUMENT", "x", "UNREGISTERED"),
			outcome: providers.TokenDead, reason: "UNREGISTERED", err: "device token rejected: UNREGISTERED"},
		{name: "errorCode over status: UNAVAILABLE on a 400", status: 400, retryAfter: "3",
			body:    gerr(400, "INVALID_ARGUMENT", "try later", "UNAVAILABLE"),
			outcome: providers.Retry, reason: "UNAVAILABLE", after: 3 * time.Second, err: "fcm: UNAVAILABLE: try later"},
		{name: "errorCode over status: INVALID_ARGUMENT on a 503", status: 503,
			body:    gerr(503, "UNAVAILABLE", "bad", "INVALID_ARGUMENT"),
			outcome: providers.Failed, reason: "INVALID_ARGUMENT", err: "fcm: INVALID_ARGUMENT: bad"},
		{name: "the first FcmError detail counts", status: 404,
			body: `{"error":{"code":404,"status":"NOT_FOUND","message":"gone","details":[` +
				`{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token"}]},` +
				`{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"},` +
				`{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INTERNAL"}]}}`,
			outcome: providers.TokenDead, reason: "UNREGISTERED", err: "device token rejected: UNREGISTERED"},
		{name: "an errorCode in another detail type does not count", status: 404,
			body:    `{"error":{"code":404,"status":"NOT_FOUND","message":"gone","details":[{"@type":"type.example/Other","errorCode":"UNREGISTERED"}]}}`,
			outcome: providers.Failed, reason: ReasonOther, err: "fcm: NOT_FOUND: gone"},
		{name: "an unknown errorCode: the status decides", status: 503, retryAfter: "2",
			body:    gerr(503, "UNAVAILABLE", "new", "SOMETHING_NEW"),
			outcome: providers.Retry, reason: "UNAVAILABLE", after: 2 * time.Second, err: "fcm: UNAVAILABLE: new"},

		// JSON without details: the HTTP status decides, Google's status names it.
		{name: "401 of the access token", status: 401,
			body:    gerr(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
			outcome: providers.Failed, reason: ReasonAuth, err: "fcm: UNAUTHENTICATED: Request had invalid authentication credentials."},
		{name: "403 of the access token", status: 403, body: gerr(403, "PERMISSION_DENIED", "The caller does not have permission"),
			outcome: providers.Failed, reason: ReasonAuth, err: "fcm: PERMISSION_DENIED: The caller does not have permission"},
		{name: "404 without details", status: 404, body: gerr(404, "NOT_FOUND", "Requested entity was not found."),
			outcome: providers.Failed, reason: ReasonOther, err: "fcm: NOT_FOUND: Requested entity was not found."},
		{name: "400 without details", status: 400, body: gerr(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
			outcome: providers.Failed, reason: "INVALID_ARGUMENT", err: "fcm: INVALID_ARGUMENT: Request contains an invalid argument."},
		{name: "503 without details", status: 503, retryAfter: "9", body: gerr(503, "UNAVAILABLE", "Service unavailable."),
			outcome: providers.Retry, reason: "UNAVAILABLE", after: 9 * time.Second, err: "fcm: UNAVAILABLE: Service unavailable."},
		{name: "504 deadline exceeded", status: 504, body: gerr(504, "DEADLINE_EXCEEDED", "Deadline expired."),
			outcome: providers.Retry, reason: ReasonOther, err: "fcm: Deadline expired."},
		{name: "a status that is none of Google's", status: 409, body: gerr(409, "SOMETHING", "odd"),
			outcome: providers.Failed, reason: ReasonOther, err: "fcm: odd"},
		{name: "JSON without a message", status: 400, body: `{"error":{"status":"INVALID_ARGUMENT"}}`,
			outcome: providers.Failed, reason: "INVALID_ARGUMENT", err: `fcm: INVALID_ARGUMENT: HTTP 400: {"error":{"status":"INVALID_ARGUMENT"}}`},
		{name: "JSON of another shape", status: 500, body: `{"error":"boom"}`,
			outcome: providers.Retry, reason: "INTERNAL", err: `fcm: INTERNAL: HTTP 500: {"error":"boom"}`},
		{name: "a field of the wrong type: the rest still counts", status: 404,
			body:    `{"error":{"code":"404","message":"gone","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`,
			outcome: providers.TokenDead, reason: "UNREGISTERED", err: "device token rejected: UNREGISTERED"},

		// Not JSON: the HTTP status decides and names it.
		{name: "bad gateway page", status: 502, body: "<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>\n",
			outcome: providers.Retry, reason: ReasonOther, err: "fcm: HTTP 502: <html><body> <h1>502 Bad Gateway</h1> </body></html>"},
		{name: "429 without a body", status: 429, retryAfter: "120", outcome: providers.Retry, reason: "QUOTA_EXCEEDED",
			after: 2 * time.Minute, err: "fcm: RESOURCE_EXHAUSTED: HTTP 429 without a body"},
		{name: "503 with text", status: 503, retryAfter: "soon", body: "upstream connect error",
			outcome: providers.Retry, reason: "UNAVAILABLE", err: "fcm: UNAVAILABLE: HTTP 503: upstream connect error"},
		{name: "500, whitespace only", status: 500, body: " \n", outcome: providers.Retry, reason: "INTERNAL",
			err: "fcm: INTERNAL: HTTP 500 without a body"},
		{name: "a redirect", status: 307, body: "moved", outcome: providers.Failed, reason: ReasonOther, err: "fcm: HTTP 307: moved"},
		// A refusal without Google's error object is not FCM's.
		{name: "teapot", status: 418, body: "I'm a teapot", outcome: providers.Failed, reason: "wrong_endpoint",
			err: "fcm: egress misconfigured: fcm.example:443 answered HTTP 418, not as FCM does (I'm a teapot)" + wrongEndpointFix},
		{name: "a reverse proxy's 404", status: 404, body: "<html><body><h1>404 Not Found</h1></body></html>", outcome: providers.Failed,
			reason: "wrong_endpoint", err: "fcm: egress misconfigured: fcm.example:443 answered HTTP 404, not as FCM does (<html><body><h1>404 Not Found</h1></body></html>)" + wrongEndpointFix},

		// The device token never shows, even where a quote is cut.
		{name: "message echoing the token", status: 400, body: gerr(400, "INVALID_ARGUMENT", "bad token "+token),
			outcome: providers.Failed, reason: "INVALID_ARGUMENT",
			err: "fcm: INVALID_ARGUMENT: bad token token:" + wire.TokenHash(token)},
		{name: "body echoing the token across the cut", status: 502, body: strings.Repeat("x", maxQuote-10) + " " + token,
			outcome: providers.Retry, reason: ReasonOther,
			err: "fcm: HTTP 502: " + wire.TruncateUTF8(strings.Repeat("x", maxQuote-10)+" token:"+wire.TokenHash(token), maxQuote)},
		{name: "foreign refusal echoing the token", status: 403, body: "denied " + token,
			outcome: providers.Failed, reason: "wrong_endpoint",
			err: "fcm: egress misconfigured: fcm.example:443 answered HTTP 403, not as FCM does (denied token:" + wire.TokenHash(token) + ")" + wrongEndpointFix},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := classify(tc.status, tc.retryAfter, []byte(tc.body), "fcm.example:443", token)
			if r.Outcome != tc.outcome || r.Reason != tc.reason || r.RetryAfter != tc.after {
				t.Errorf("classify = {%v %q %v %v}, want {%v %q %v}", r.Outcome, r.Reason, r.RetryAfter, r.Err,
					tc.outcome, tc.reason, tc.after)
			}
			got := ""
			if r.Err != nil {
				got = r.Err.Error()
			}
			if got != tc.err {
				t.Errorf("Err = %q\n want %q", got, tc.err)
			}
			if strings.Contains(got, token) || strings.Contains(got, token[:8]) {
				t.Errorf("Err %q holds the device token", got)
			}
		})
	}
}

// TestClassifyBoundsQuotes: a long answer is quoted bounded, on one line.
func TestClassifyBoundsQuotes(t *testing.T) {
	for _, body := range []string{
		strings.Repeat("word\n", maxAnswer),
		`{"error":{"status":"INTERNAL","message":"` + strings.Repeat("é", 1000) + `"}}`,
	} {
		r := classify(500, "", []byte(body), "h", "")
		if msg := r.Err.Error(); len(msg) > maxQuote+40 || strings.Contains(msg, "\n") {
			t.Errorf("Err is %d bytes: %.80q...", len(msg), msg)
		}
	}
}

// TestPlainName holds the decoder-free reading of FCM's answer to what the
// decoder says, and to its own limits: anything but the plain shape goes
// to the decoder.
func TestPlainName(t *testing.T) {
	for _, tc := range []struct {
		body         string
		nonEmpty, ok bool
	}{
		{`{"name":"projects/p/messages/0:1500415314455276%31bd1c9631bd1c96"}`, true, true},
		{"{\n  \"name\": \"projects/p/messages/1\"\n}\n", true, true},
		{` { "name" : "x" } `, true, true},
		{`{"name":""}`, false, true},
		{`{"name":"a\"b"}`, false, false},
		{`{"name":"a\u0041"}`, false, false},
		{`{"name":"é"}`, false, false},
		{"{\"name\":\"a\tb\"}", false, false},
		{`{"name":"a","name":"b"}`, false, false},
		{`{"x":1,"name":"a"}`, false, false},
		{`{"Name":"a"}`, false, false},
		{`{"name":"a"}x`, false, false},
		{`{"name":"a"`, false, false},
		{`{"name":"a`, false, false},
		{`{"name":1}`, false, false},
		{`["name"]`, false, false},
		{``, false, false},
	} {
		nonEmpty, ok := plainName([]byte(tc.body))
		if nonEmpty != tc.nonEmpty || ok != tc.ok {
			t.Errorf("plainName(%q) = %v, %v; want %v, %v", tc.body, nonEmpty, ok, tc.nonEmpty, tc.ok)
		}
		var a struct {
			Name string `json:"name"`
		}
		decoded := jsonv2.Unmarshal([]byte(tc.body), &a) == nil && a.Name != ""
		if got := isFCMAnswer([]byte(tc.body)); got != decoded {
			t.Errorf("isFCMAnswer(%q) = %v; the decoder says %v", tc.body, got, decoded)
		}
	}
}

func BenchmarkIsFCMAnswer(b *testing.B) {
	body := []byte(`{"name":"projects/p/messages/0:1500415314455276%31bd1c9631bd1c96"}`)
	b.ReportAllocs()
	for b.Loop() {
		if !isFCMAnswer(body) {
			b.Fatal("not an answer")
		}
	}
}

// wrongEndpointFix ends the error of a refusal that is not FCM's.
const wrongEndpointFix = ": a wrong URL, or a reverse proxy or gateway answers in its place: check apps[].fcm.endpoint and that proxy's routes"
