package fcm_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// env is a provider wired to an FCM look-alike through a real egress.
type env struct {
	google *sandbox.FCM
	creds  sandbox.Credentials
	p      *fcm.Provider
}

// newEnv starts a look-alike and builds a provider for it. edit, if not
// nil, may change the config and the service account JSON before New.
func newEnv(t *testing.T, edit func(e *env, cfg *fcm.Config, sa map[string]string)) *env {
	t.Helper()
	e := &env{google: sandbox.NewFCM()}
	t.Cleanup(e.google.Close)
	var err error
	e.creds, err = sandbox.WriteCredentials(t.TempDir(), nil, e.google)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fcm.Config{ServiceAccountFile: e.creds.ServiceAccountFile, Endpoint: e.google.URL()}
	if edit != nil {
		raw, err := os.ReadFile(e.creds.ServiceAccountFile)
		if err != nil {
			t.Fatal(err)
		}
		var sa map[string]string
		if err := json.Unmarshal(raw, &sa); err != nil {
			t.Fatal(err)
		}
		edit(e, &cfg, sa)
		if raw, err = json.Marshal(sa); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(e.creds.ServiceAccountFile, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	eg, err := egress.New(egress.Config{CAFile: e.creds.CAFile}, []string{"127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.p, err = fcm.New(context.Background(), cfg, eg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// send sends n with a deadline of timeout and returns the result and how
// long Send took.
func (e *env) send(t *testing.T, n *wire.Notification, timeout time.Duration) (providers.Result, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	res := e.p.Send(ctx, n)
	return res, time.Since(start)
}

// note is a normalized message notification to token.
func note(t *testing.T, token string) *wire.Notification {
	n := base(wire.TypeMessage)
	n.DeviceID, n.PostID, n.Message, n.SenderName = token, "post-1", "secret text", "alice"
	return normalized(t, n)
}

// checkNoLeak fails when the result's error holds the device token or the
// notification's content.
func checkNoLeak(t *testing.T, res providers.Result, n *wire.Notification) {
	t.Helper()
	if res.Err == nil {
		return
	}
	msg := res.Err.Error()
	for _, secret := range []string{n.DeviceID, n.Message, n.SenderName} {
		if secret != "" && strings.Contains(msg, secret) {
			t.Errorf("Err %q holds %q", msg, secret)
		}
	}
}

// TestSendBodies checks the exact FCM v1 message that reaches Google for
// every kind of notification, over HTTP/2 with one access token.
func TestSendBodies(t *testing.T) {
	e := newEnv(t, nil)
	for i, tc := range buildCases {
		n := normalized(t, tc.n())
		n.DeviceID = "device-" + string(rune('a'+i))
		res, _ := e.send(t, n, 5*time.Second)
		if res.Outcome != providers.Delivered || res.Err != nil {
			t.Fatalf("%s: Send = %+v, want delivered", tc.name, res)
		}
		reqs := e.google.Requests()
		if len(reqs) != i+1 {
			t.Fatalf("%s: %d requests reached FCM, want %d", tc.name, len(reqs), i+1)
		}
		r := reqs[i]
		var body map[string]any
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatalf("%s: body %s: %v", tc.name, r.Body, err)
		}
		data := map[string]any{}
		for k, v := range tc.data {
			data[k] = v
		}
		want := map[string]any{"message": map[string]any{
			"token":   n.DeviceID,
			"data":    data,
			"android": map[string]any{"priority": "high"},
		}}
		if !reflect.DeepEqual(body, want) {
			t.Errorf("%s: body\n got %s\nwant %v", tc.name, r.Body, want)
		}
		if r.Project != e.creds.ProjectID || r.Proto != "HTTP/2.0" || r.Status != http.StatusOK {
			t.Errorf("%s: project %q, proto %q, status %d", tc.name, r.Project, r.Proto, r.Status)
		}
	}
	reqs := e.google.Requests()
	authz := reqs[0].Header.Get("Authorization")
	if !strings.HasPrefix(authz, "Bearer ya29.") {
		t.Errorf("Authorization = %q, want a bearer token from the token endpoint", authz)
	}
	for _, r := range reqs {
		if got := r.Header.Get("Authorization"); got != authz {
			t.Errorf("access token changed between sends: %q then %q", authz, got)
		}
	}
	if got := e.google.TokenFetches(); got != 1 {
		t.Errorf("TokenFetches = %d, want 1 (fetched once, reused)", got)
	}
	if got := e.google.Delivered(); got != len(buildCases) {
		t.Errorf("Delivered = %d, want %d", got, len(buildCases))
	}
}

// TestSendConcurrent starts many sends before any access token exists: one
// fetch serves them all.
func TestSendConcurrent(t *testing.T) {
	e := newEnv(t, nil)
	const senders = 24
	var wg sync.WaitGroup
	results := make([]providers.Result, senders)
	for i := range senders {
		wg.Go(func() {
			results[i], _ = e.send(t, note(t, "device-c"+string(rune('a'+i))), 10*time.Second)
		})
	}
	wg.Wait()
	for i, res := range results {
		if res.Outcome != providers.Delivered {
			t.Errorf("send %d: %+v", i, res)
		}
	}
	if got := e.google.TokenFetches(); got != 1 {
		t.Errorf("TokenFetches = %d, want 1", got)
	}
	if got := e.google.Delivered(); got != senders {
		t.Errorf("Delivered = %d, want %d", got, senders)
	}
}

// TestSendClassification checks how each answer of FCM is classified.
func TestSendClassification(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name       string
		kill       string // KillToken code for the case's token
		fault      *sandbox.Fault
		timeout    time.Duration
		outcome    providers.Outcome
		reason     string
		retryAfter time.Duration
		errHas     string
		maxTime    time.Duration // 0: no bound checked
	}{
		{name: "delivered", outcome: providers.Delivered},
		{name: "unregistered", kill: "UNREGISTERED", outcome: providers.TokenDead, reason: "UNREGISTERED", errHas: "UNREGISTERED"},
		{name: "sender id mismatch", kill: "SENDER_ID_MISMATCH", outcome: providers.TokenDead, reason: "SENDER_ID_MISMATCH"},
		{name: "invalid argument", kill: "INVALID_ARGUMENT", outcome: providers.Failed, reason: "INVALID_ARGUMENT",
			errHas: "fcm: INVALID_ARGUMENT: The registration token is not a valid FCM registration token"},
		{name: "third party auth", kill: "THIRD_PARTY_AUTH_ERROR", outcome: providers.Failed, reason: "THIRD_PARTY_AUTH_ERROR",
			errHas: "fcm: THIRD_PARTY_AUTH_ERROR: Auth error from APNS or Web Push Service"},
		{name: "400 without an FCM code", fault: &sandbox.Fault{Status: 400}, outcome: providers.Failed,
			reason: "INVALID_ARGUMENT", errHas: "fcm: INVALID_ARGUMENT: Request contains an invalid argument."},
		{name: "401", fault: &sandbox.Fault{Status: 401}, outcome: providers.Failed, reason: "auth", errHas: "fcm: UNAUTHENTICATED: "},
		{name: "403", fault: &sandbox.Fault{Status: 403}, outcome: providers.Failed, reason: "auth", errHas: "fcm: PERMISSION_DENIED: "},
		{name: "404 without an FCM code", fault: &sandbox.Fault{Status: 404}, outcome: providers.Failed, reason: "other",
			errHas: "fcm: NOT_FOUND: Requested entity was not found."},
		{name: "500 internal", fault: &sandbox.Fault{Status: 500}, outcome: providers.Retry, reason: "INTERNAL",
			errHas: "fcm: INTERNAL: Internal error encountered.", maxTime: time.Second},
		{name: "429 quota exceeded", fault: &sandbox.Fault{Status: 429, RetryAfter: 7 * time.Second}, outcome: providers.Retry,
			reason: "QUOTA_EXCEEDED", retryAfter: 7 * time.Second, errHas: "fcm: QUOTA_EXCEEDED: ", maxTime: time.Second},
		// One attempt per Send: a 503 goes back to the relay, with its
		// Retry-After (beyond the deadline or not), and is retried there.
		{name: "503 with Retry-After beyond the deadline", fault: &sandbox.Fault{Status: 503, RetryAfter: 30 * time.Second},
			timeout: 3 * time.Second, outcome: providers.Retry, reason: "UNAVAILABLE", retryAfter: 30 * time.Second,
			errHas: "fcm: UNAVAILABLE: The service is currently unavailable.", maxTime: time.Second},
		{name: "503 without Retry-After", fault: &sandbox.Fault{Status: 503}, timeout: 1500 * time.Millisecond,
			outcome: providers.Retry, reason: "UNAVAILABLE", errHas: "fcm: UNAVAILABLE: ", maxTime: time.Second},
		{name: "503 once is not retried within Send", fault: &sandbox.Fault{Status: 503, Count: 1},
			outcome: providers.Retry, reason: "UNAVAILABLE", maxTime: time.Second},
		{name: "503 with a Retry-After > 2 min", fault: &sandbox.Fault{Status: 503, RetryAfter: 5 * time.Minute},
			outcome: providers.Retry, reason: "UNAVAILABLE", retryAfter: 5 * time.Minute, maxTime: time.Second,
			errHas: "fcm: UNAVAILABLE: The service is currently unavailable."},
		{name: "no answer before the deadline", fault: &sandbox.Fault{Delay: 5 * time.Second}, timeout: 300 * time.Millisecond,
			outcome: providers.Retry, reason: "timeout", errHas: "no answer before the deadline", maxTime: 2 * time.Second},
		{name: "stream resets", fault: &sandbox.Fault{Reset: true}, timeout: 1500 * time.Millisecond,
			outcome: providers.Retry, reason: "transport", errHas: "fcm: post to 127.0.0.1:", maxTime: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.google.Recover()
			e.google.Reset()
			token := "device-" + strings.ReplaceAll(tc.name, " ", "-")
			if tc.kill != "" {
				e.google.KillToken(token, tc.kill)
			}
			if tc.fault != nil {
				e.google.Fail(*tc.fault)
			}
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			n := note(t, token)
			res, took := e.send(t, n, timeout)
			e.google.Recover()
			t.Logf("%v %q after %v: %v", res.Outcome, res.Reason, res.RetryAfter, res.Err)
			if res.Outcome != tc.outcome || res.Reason != tc.reason || res.RetryAfter != tc.retryAfter {
				t.Errorf("Send = {%v %q %v %v}, want {%v %q %v}", res.Outcome, res.Reason, res.RetryAfter, res.Err,
					tc.outcome, tc.reason, tc.retryAfter)
			}
			if (res.Err == nil) != (tc.outcome == providers.Delivered) {
				t.Errorf("Err = %v for outcome %v", res.Err, res.Outcome)
			}
			if tc.errHas != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tc.errHas)) {
				t.Errorf("Err = %v, want it to contain %q", res.Err, tc.errHas)
			}
			if tc.maxTime > 0 && took > tc.maxTime {
				t.Errorf("Send took %v, want at most %v", took, tc.maxTime)
			}
			if took > timeout+time.Second {
				t.Errorf("Send took %v, beyond its deadline of %v", took, timeout)
			}
			if got := len(e.google.Requests()); got != 1 {
				t.Errorf("%d requests reached FCM, want 1 (one attempt per Send)", got)
			}
			checkNoLeak(t, res, n)
		})
	}
	if got := e.google.TokenFetches(); got != 0 { // counted since the last Reset
		t.Errorf("TokenFetches = %d after the first send, want the access token reused", got)
	}
}

// TestSendCanceled: a caller giving up is a retryable timeout.
func TestSendCanceled(t *testing.T) {
	e := newEnv(t, nil)
	e.google.Fail(sandbox.Fault{Delay: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	n := note(t, "device-canceled")
	res := e.p.Send(ctx, n)
	t.Logf("%v %q: %v", res.Outcome, res.Reason, res.Err)
	if res.Outcome != providers.Retry || res.Reason != fcm.ReasonTimeout || !strings.Contains(res.Err.Error(), "canceled") {
		t.Errorf("Send = %+v, want a retryable timeout saying canceled", res)
	}
	checkNoLeak(t, res, n)
}

// TestSendEgressDenied: a host outside the allowlist fails the send at
// once, before anything leaves.
func TestSendEgressDenied(t *testing.T) {
	t.Run("token endpoint", func(t *testing.T) {
		e := newEnv(t, func(e *env, _ *fcm.Config, sa map[string]string) {
			sa["token_uri"] = strings.Replace(e.google.TokenURL(), "127.0.0.1", "localhost", 1)
		})
		n := note(t, "device-denied-1")
		res, took := e.send(t, n, 5*time.Second)
		t.Logf("%v %q: %v", res.Outcome, res.Reason, res.Err)
		if res.Outcome != providers.Failed || res.Reason != fcm.ReasonEgressDenied ||
			res.Err == nil || !strings.Contains(res.Err.Error(), "egress to localhost refused") {
			t.Errorf("Send = %+v, want failed egress_denied naming localhost", res)
		}
		if !errors.Is(res.Err, egress.ErrHostNotAllowed) {
			t.Errorf("Err %v does not wrap egress.ErrHostNotAllowed", res.Err)
		}
		if took > time.Second {
			t.Errorf("Send took %v, want it to fail at once", took)
		}
		if n, f := len(e.google.Requests()), e.google.TokenFetches(); n != 0 || f != 0 {
			t.Errorf("%d sends and %d token fetches reached the sandbox, want none", n, f)
		}
		checkNoLeak(t, res, n)
	})
	t.Run("FCM endpoint", func(t *testing.T) {
		e := newEnv(t, func(e *env, cfg *fcm.Config, _ map[string]string) {
			cfg.Endpoint = strings.Replace(e.google.URL(), "127.0.0.1", "localhost", 1)
		})
		n := note(t, "device-denied-2")
		res, took := e.send(t, n, 5*time.Second)
		t.Logf("%v %q: %v", res.Outcome, res.Reason, res.Err)
		if res.Outcome != providers.Failed || res.Reason != fcm.ReasonEgressDenied ||
			res.Err == nil || !strings.Contains(res.Err.Error(), "egress to localhost refused") {
			t.Errorf("Send = %+v, want failed egress_denied naming localhost", res)
		}
		if took > time.Second {
			t.Errorf("Send took %v, want it to fail at once", took)
		}
		if n := len(e.google.Requests()); n != 0 {
			t.Errorf("%d sends reached the sandbox, want none", n)
		}
		checkNoLeak(t, res, n)
	})
}

// TestSendTokenEndpoint: the token endpoint refusing the service account
// fails at once; the token endpoint being unreachable is retryable.
func TestSendTokenEndpoint(t *testing.T) {
	t.Run("invalid_grant", func(t *testing.T) {
		e := newEnv(t, nil)
		// A second service account for the same client_email: the
		// sandbox now trusts only its key, not the first one's.
		if _, err := sandbox.WriteCredentials(t.TempDir(), nil, e.google); err != nil {
			t.Fatal(err)
		}
		n := note(t, "device-grant")
		res, took := e.send(t, n, 5*time.Second)
		t.Logf("%v %q: %v", res.Outcome, res.Reason, res.Err)
		if res.Outcome != providers.Failed || res.Reason != fcm.ReasonAuth || res.Err == nil ||
			!strings.Contains(res.Err.Error(), "refused the service account: invalid_grant: Invalid JWT Signature. (HTTP 400)") {
			t.Errorf("Send = %+v, want failed auth with invalid_grant", res)
		}
		if took > time.Second {
			t.Errorf("Send took %v, want it to fail at once", took)
		}
		if n := len(e.google.Requests()); n != 0 {
			t.Errorf("%d sends reached FCM without a token", n)
		}
		checkNoLeak(t, res, n)
	})
	t.Run("unreachable", func(t *testing.T) {
		dead := sandbox.NewFCM()
		deadTokenURL := dead.TokenURL()
		dead.Close() // nothing listens there any more
		e := newEnv(t, func(_ *env, _ *fcm.Config, sa map[string]string) { sa["token_uri"] = deadTokenURL })
		n := note(t, "device-no-token")
		res, took := e.send(t, n, 1500*time.Millisecond)
		t.Logf("%v %q: %v", res.Outcome, res.Reason, res.Err)
		if res.Outcome != providers.Retry || res.Reason != fcm.ReasonTransport || res.Err == nil ||
			!strings.Contains(res.Err.Error(), "fcm: fetching an OAuth token from 127.0.0.1:") {
			t.Errorf("Send = %+v, want a retryable transport error about the token", res)
		}
		if took > 2500*time.Millisecond {
			t.Errorf("Send took %v, beyond its deadline", took)
		}
		checkNoLeak(t, res, n)
	})
	t.Run("deadline already passed", func(t *testing.T) {
		e := newEnv(t, nil)
		// No token yet, and no time to wait for one.
		n := note(t, "device-slow")
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		res := e.p.Send(ctx, n)
		t.Logf("%v %q: %v", res.Outcome, res.Reason, res.Err)
		if res.Outcome != providers.Retry || res.Reason != fcm.ReasonTimeout {
			t.Errorf("Send = %+v, want a retryable timeout", res)
		}
		checkNoLeak(t, res, n)
	})
}

// TestSendForeignAnswers: answers that are not FCM's (a proxy's, a
// gateway's) are classified by status, quoted bounded and without the token.
func TestSendForeignAnswers(t *testing.T) {
	google := sandbox.NewFCM() // for access tokens
	defer google.Close()
	creds, err := sandbox.WriteCredentials(t.TempDir(), nil, google)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var answer http.HandlerFunc
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := answer
		mu.Unlock()
		h(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ca, err := os.ReadFile(creds.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	ca = append(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})...)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	eg, err := egress.New(egress.Config{CAFile: caFile}, []string{"127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := fcm.New(context.Background(), fcm.Config{ServiceAccountFile: creds.ServiceAccountFile, Endpoint: srv.URL}, eg)
	if err != nil {
		t.Fatal(err)
	}
	reply := func(status int, header, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if k, v, ok := strings.Cut(header, ": "); ok {
				w.Header().Set(k, v)
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	for _, tc := range []struct {
		name       string
		answer     http.HandlerFunc
		outcome    providers.Outcome
		reason     string
		retryAfter [2]time.Duration // bounds
		errHas     string
	}{
		{name: "bad gateway page", answer: reply(502, "Content-Type: text/html", "<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>\n"),
			outcome: providers.Retry, reason: "other",
			errHas: "fcm: HTTP 502: <html><body> <h1>502 Bad Gateway</h1> </body></html>"},
		{name: "Retry-After as an HTTP date",
			answer:  reply(429, "Retry-After: "+time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat), ""),
			outcome: providers.Retry, reason: "QUOTA_EXCEEDED", retryAfter: [2]time.Duration{85 * time.Second, 90 * time.Second},
			errHas: "fcm: RESOURCE_EXHAUSTED: HTTP 429 without a body"},
		{name: "echoes the token", answer: func(w http.ResponseWriter, r *http.Request) {
			var body struct{ Message struct{ Token string } }
			json.NewDecoder(r.Body).Decode(&body)
			reply(400, "", `{"error":{"code":400,"status":"INVALID_ARGUMENT","message":"bad token `+body.Message.Token+`"}}`)(w, r)
		}, outcome: providers.Failed, reason: "INVALID_ARGUMENT",
			errHas: "fcm: INVALID_ARGUMENT: bad token token:" + wire.TokenHash("device-echoes-the-token")},
		{name: "200 but not FCM's answer", answer: reply(200, "Content-Type: text/html", "<html>captive portal</html>"),
			outcome: providers.Retry, reason: "other", errHas: "but not FCM's answer"},
		{name: "long answer", answer: reply(418, "", strings.Repeat("x", 5000)),
			outcome: providers.Failed, reason: "wrong_endpoint", errHas: "answered HTTP 418, not as FCM does (xxx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			answer = tc.answer
			mu.Unlock()
			n := note(t, "device-"+strings.ReplaceAll(tc.name, " ", "-"))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res := p.Send(ctx, n)
			t.Logf("%v %q after %v: %v", res.Outcome, res.Reason, res.RetryAfter, res.Err)
			if res.Outcome != tc.outcome || res.Reason != tc.reason ||
				res.RetryAfter < tc.retryAfter[0] || res.RetryAfter > tc.retryAfter[1] {
				t.Errorf("Send = {%v %q %v %v}, want {%v %q %v}", res.Outcome, res.Reason, res.RetryAfter, res.Err,
					tc.outcome, tc.reason, tc.retryAfter)
			}
			if res.Err == nil || !strings.Contains(res.Err.Error(), tc.errHas) {
				t.Errorf("Err = %v, want it to contain %q", res.Err, tc.errHas)
			}
			if res.Err != nil && len(res.Err.Error()) > 300 {
				t.Errorf("Err is %d bytes long, want it bounded", len(res.Err.Error()))
			}
			checkNoLeak(t, res, n)
		})
	}
}

// TestSendRefused: a message that cannot be sent as it is (no device
// token: Normalize prevents it) fails without a request.
func TestSendRefused(t *testing.T) {
	e := newEnv(t, nil)
	n := base(wire.TypeMessage)
	n.DeviceID = ""
	res, _ := e.send(t, &n, 5*time.Second)
	if res.Outcome != providers.Failed || res.Reason != fcm.ReasonOther || res.Err == nil ||
		!strings.Contains(res.Err.Error(), "fcm: message not sent: no device token") {
		t.Errorf("Send = %+v, want failed other", res)
	}
	if n := len(e.google.Requests()) + e.google.TokenFetches(); n != 0 {
		t.Errorf("%d requests reached the sandbox", n)
	}
}

// TestSendTTLAndHeaders: the attempt's expiry becomes android.ttl, in
// FCM's "<seconds>s"; the request is JSON with one bearer token, and one
// request per Send.
func TestSendTTLAndHeaders(t *testing.T) {
	e := newEnv(t, nil)
	n := note(t, "device-ttl")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = providers.WithAttempt(ctx, providers.Attempt{Expires: time.Now().Add(time.Hour)})
	if res := e.p.Send(ctx, n); res.Outcome != providers.Delivered {
		t.Fatalf("Send = %+v, want delivered", res)
	}
	reqs := e.google.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests reached FCM, want 1", len(reqs))
	}
	r := reqs[0]
	var body struct {
		Message struct {
			Android map[string]any `json:"android"`
		} `json:"message"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if ttl := body.Message.Android["ttl"]; ttl != "3599s" && ttl != "3600s" {
		t.Errorf("android.ttl = %v, want 3599s or 3600s", ttl)
	}
	if body.Message.Android["priority"] != "high" {
		t.Errorf("android = %v, want priority high", body.Message.Android)
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "X-Goog-Api-Format-Version": "2"} {
		if got := r.Header.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := r.Header.Values("Authorization"); len(got) != 1 || !strings.HasPrefix(got[0], "Bearer ya29.") {
		t.Errorf("Authorization = %q, want one bearer token", got)
	}
}

// TestRedeliveryCollapseKey: a redelivery (an attempt after one that may
// have reached FCM) carries android.collapse_key = the ack id, so that FCM
// keeps one copy for an offline phone; a first attempt carries none, nor
// does a redelivery without an ack id. Checked on what reaches the
// look-alike, with the SDK's encoding of the same message.
func TestRedeliveryCollapseKey(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name       string
		redelivery bool
		ackID      string
		want       any // android.collapse_key; nil when absent
	}{
		{"first attempt", false, "ack-7", nil},
		{"redelivery", true, "ack-7", "ack-7"},
		{"redelivery without an ack id", true, "", nil},
	}
	for i, c := range cases {
		n := note(t, fmt.Sprintf("device-collapse-%d", i))
		n.AckID = c.ackID
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ctx = providers.WithAttempt(ctx, providers.Attempt{Expires: time.Now().Add(time.Hour), Redelivery: c.redelivery})
		res := e.p.Send(ctx, n)
		cancel()
		if res.Outcome != providers.Delivered {
			t.Fatalf("%s: Send = %+v, want delivered", c.name, res)
		}
		reqs := e.google.Requests()
		var body struct {
			Message struct {
				Android map[string]any `json:"android"`
			} `json:"message"`
		}
		if err := json.Unmarshal(reqs[len(reqs)-1].Body, &body); err != nil {
			t.Fatal(err)
		}
		if got := body.Message.Android["collapse_key"]; got != c.want {
			t.Errorf("%s: android.collapse_key = %v, want %v", c.name, got, c.want)
		}
	}
}
