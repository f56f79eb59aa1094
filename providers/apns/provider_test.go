package apns

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gopkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// sendTimeout is the deadline of sends that should succeed; generous, since
// tests run with -race on a busy machine.
const sendTimeout = 20 * time.Second

// rig is an APNs look-alike with credentials it trusts and an egress path
// that trusts its certificate.
type rig struct {
	apns  *sandbox.APNs
	creds sandbox.Credentials
	eg    *egress.Egress
}

func newRig(t *testing.T) *rig {
	t.Helper()
	s := sandbox.NewAPNs()
	t.Cleanup(s.Close)
	creds, err := sandbox.WriteCredentials(t.TempDir(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	eg, err := egress.New(egress.Config{CAFile: creds.CAFile}, []string{"127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{apns: s, creds: creds, eg: eg}
}

func (r *rig) tokenConfig() Config {
	return Config{
		Topic:       testTopic,
		AuthKeyFile: r.creds.APNsKeyFile,
		KeyID:       r.creds.KeyID,
		TeamID:      r.creds.TeamID,
		Endpoint:    r.apns.URL(),
	}
}

func (r *rig) provider(t *testing.T, cfg Config) *Provider {
	t.Helper()
	p, err := New(cfg, r.eg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// request returns the one request the look-alike received for token.
func (r *rig) request(t *testing.T, token string) sandbox.APNsRequest {
	t.Helper()
	var found []sandbox.APNsRequest
	for _, req := range r.apns.Requests() {
		if req.Token == token {
			found = append(found, req)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the look-alike received %d requests for the token, want 1", len(found))
	}
	return found[0]
}

func send(t *testing.T, p *Provider, n *wire.Notification, timeout time.Duration) providers.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Send(ctx, n)
}

func hexToken(i int) string { return fmt.Sprintf("%064x", 0xa0000+i) }

// TestSendHeadersPerAttempt sends pushes in turns with different attempts:
// each gets its own expiration, its own ack_id as collapse id (first
// attempt and redelivery alike; none without an ack_id or with one over 64
// bytes), its own push type, whatever header the one before it shared.
func TestSendHeadersPerAttempt(t *testing.T) {
	r := newRig(t)
	p := r.provider(t, r.tokenConfig())
	soon := time.Now().Add(time.Hour).Truncate(time.Second)
	cases := []struct {
		name           string
		at             providers.Attempt
		voip           bool
		wantExpiration string
		ackID          string
		wantCollapse   string
		wantPushType   string
	}{
		{"first push", providers.Attempt{Expires: soon}, false, fmt.Sprint(soon.Unix()), "ack-0", "ack-0", "alert"},
		{"redelivery", providers.Attempt{Expires: soon, Redelivery: true}, false, fmt.Sprint(soon.Unix()), "ack-1", "ack-1", "alert"},
		{"same second, no ack id", providers.Attempt{Expires: soon}, false, fmt.Sprint(soon.Unix()), "", "", "alert"},
		{"a second later", providers.Attempt{Expires: soon.Add(time.Second)}, false, fmt.Sprint(soon.Unix() + 1), "ack-3", "ack-3", "alert"},
		{"voip, same second", providers.Attempt{Expires: soon.Add(time.Second)}, true, fmt.Sprint(soon.Unix() + 1), "ack-4", "ack-4", "voip"},
		{"no expiry, ack id over 64 bytes", providers.Attempt{}, false, "", strings.Repeat("a", 65), "", "alert"},
		{"alert again", providers.Attempt{Expires: soon.Add(time.Second)}, false, fmt.Sprint(soon.Unix() + 1), "ack-6", "ack-6", "alert"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			token := hexToken(100 + i)
			n := &wire.Notification{Platform: "apple_rn", Type: wire.TypeMessage, Message: "hi", AckID: c.ackID, DeviceID: token}
			if c.voip {
				n.Transport = wire.TransportVoIP
			}
			ctx, cancel := context.WithTimeout(providers.WithAttempt(context.Background(), c.at), sendTimeout)
			defer cancel()
			if res := p.Send(ctx, n); res.Outcome != providers.Delivered {
				t.Fatalf("Send() = %+v, want Delivered", res)
			}
			h := r.request(t, token).Header
			for k, want := range map[string]string{"apns-expiration": c.wantExpiration, "apns-collapse-id": c.wantCollapse, "apns-push-type": c.wantPushType} {
				if got := h.Values(k); len(got) > 1 || h.Get(k) != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestSendPayloads posts every case of the Build table over real HTTP/2 with
// token auth and checks what the look-alike received, byte for byte after
// decoding.
func TestSendPayloads(t *testing.T) {
	r := newRig(t)
	p := r.provider(t, r.tokenConfig())
	for i, c := range payloadCases() {
		t.Run(c.name, func(t *testing.T) {
			token := hexToken(i)
			res := send(t, p, c.normalized(t, token), sendTimeout)
			if res.Outcome != providers.Delivered || res.Err != nil {
				t.Fatalf("Send() = %+v, want Delivered", res)
			}
			req := r.request(t, token)
			if req.Proto != "HTTP/2.0" {
				t.Errorf("Proto = %q, want HTTP/2.0", req.Proto)
			}
			if req.Status != http.StatusOK {
				t.Errorf("look-alike answered %d", req.Status)
			}
			for k, want := range map[string]string{
				"apns-topic":     c.wantTopic(),
				"apns-push-type": c.wantPushType(),
				"apns-priority":  "10",
			} {
				if got := req.Header.Values(k); len(got) != 1 || got[0] != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if authz := req.Header.Get("authorization"); !strings.HasPrefix(authz, "bearer ") || len(authz) < 50 {
				t.Errorf("authorization = %q, want a bearer provider token", authz)
			}
			if req.ClientCert != "" {
				t.Errorf("a client certificate was presented with token auth: %q", req.ClientCert)
			}
			comparePayload(t, req.Body, c.want)
		})
	}
	if got, want := r.apns.Delivered(), len(payloadCases()); got != want {
		t.Errorf("Delivered() = %d, want %d", got, want)
	}
}

// TestSendCertificateAuth sends with a client certificate instead of a
// provider token: PEM and legacy PKCS#12.
func TestSendCertificateAuth(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	id := newIdentity(t, testRSAKey(t), "Apple Push Services: "+testTopic)
	pass := writeFile(t, dir, "cert.pass", []byte(testPassword+"\n"))
	for i, c := range []struct {
		name     string
		cfg      Config
		clientCN string
	}{
		{"PEM from the sandbox", Config{CertFile: r.creds.APNsCertFile}, "Apple Push Services: " + r.creds.Topic},
		{"PKCS#12 legacy 3DES", Config{
			CertFile:         writeFile(t, dir, "legacy.p12", id.p12(t, gopkcs12.LegacyDES, testPassword)),
			CertPasswordFile: pass,
		}, id.cert.Subject.CommonName},
		{"PKCS#12 Legacy", Config{
			CertFile:         writeFile(t, dir, "legacy.pfx", id.p12(t, gopkcs12.Legacy, testPassword)),
			CertPasswordFile: pass,
		}, id.cert.Subject.CommonName},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Topic = testTopic
			c.cfg.Endpoint = r.apns.URL()
			p := r.provider(t, c.cfg)
			token := hexToken(100 + i)
			n := payloadCases()[0].normalized(t, token)
			if res := send(t, p, n, sendTimeout); res.Outcome != providers.Delivered {
				t.Fatalf("Send() = %+v, want Delivered", res)
			}
			req := r.request(t, token)
			if req.ClientCert != c.clientCN {
				t.Errorf("client certificate CN = %q, want %q", req.ClientCert, c.clientCN)
			}
			if authz := req.Header.Get("authorization"); authz != "" {
				t.Errorf("authorization = %q, want none with certificate auth", authz)
			}
			if req.Proto != "HTTP/2.0" {
				t.Errorf("Proto = %q, want HTTP/2.0", req.Proto)
			}
			if p.CertExpiry().IsZero() {
				t.Error("CertExpiry() is zero with certificate auth")
			}
		})
	}
}

// TestSendOutcomes checks the classification of every kind of answer, and
// that no error text holds the device token.
func TestSendOutcomes(t *testing.T) {
	r := newRig(t)
	p := r.provider(t, r.tokenConfig())

	for i, c := range []struct {
		name       string
		setup      func(token string)
		timeout    time.Duration
		outcome    providers.Outcome
		reason     string
		retryAfter time.Duration
		errHas     string
	}{
		{name: "delivered", outcome: providers.Delivered},
		{name: "410 Unregistered", setup: func(tok string) { r.apns.KillToken(tok, "Unregistered") },
			outcome: providers.TokenDead, reason: "Unregistered"},
		{name: "400 BadDeviceToken", setup: func(tok string) { r.apns.KillToken(tok, "BadDeviceToken") },
			outcome: providers.TokenDead, reason: "BadDeviceToken"},
		{name: "400 DeviceTokenNotForTopic", setup: func(tok string) { r.apns.KillToken(tok, "DeviceTokenNotForTopic") },
			outcome: providers.TokenDead, reason: "DeviceTokenNotForTopic"},
		{name: "500", setup: func(string) { r.apns.Fail(sandbox.Fault{Status: 500, Count: 1}) },
			outcome: providers.Retry, reason: "InternalServerError", errHas: "apns: InternalServerError (HTTP 500)"},
		{name: "503 with Retry-After", setup: func(string) {
			r.apns.Fail(sandbox.Fault{Status: 503, RetryAfter: 7 * time.Second, Count: 1})
		}, outcome: providers.Retry, reason: "ServiceUnavailable", retryAfter: 7 * time.Second},
		{name: "503 Shutdown", setup: func(string) { r.apns.Fail(sandbox.Fault{Status: 503, Reason: "Shutdown", Count: 1}) },
			outcome: providers.Retry, reason: "Shutdown"},
		{name: "429", setup: func(string) { r.apns.Fail(sandbox.Fault{Status: 429, RetryAfter: time.Second, Count: 1}) },
			outcome: providers.Retry, reason: "TooManyRequests", retryAfter: time.Second},
		{name: "403 ExpiredProviderToken", setup: func(string) {
			r.apns.Fail(sandbox.Fault{Status: 403, Reason: "ExpiredProviderToken", Count: 1})
		}, outcome: providers.Retry, reason: "ExpiredProviderToken"},
		{name: "400 TopicDisallowed", setup: func(string) {
			r.apns.Fail(sandbox.Fault{Status: 400, Reason: "TopicDisallowed", Count: 1})
		}, outcome: providers.Failed, reason: "TopicDisallowed", errHas: "apns: TopicDisallowed (HTTP 400)"},
		{name: "403 InvalidProviderToken", setup: func(string) {
			r.apns.Fail(sandbox.Fault{Status: 403, Reason: "InvalidProviderToken", Count: 1})
		}, outcome: providers.Failed, reason: "InvalidProviderToken", errHas: "apns: InvalidProviderToken (HTTP 403)"},
		{name: "410 ExpiredToken", setup: func(tok string) { r.apns.KillToken(tok, "ExpiredToken") },
			outcome: providers.Failed, reason: "ExpiredToken"},
		{name: "undocumented reason", setup: func(string) {
			r.apns.Fail(sandbox.Fault{Status: 400, Reason: "SomethingNew", Count: 1})
		}, outcome: providers.Failed, reason: "other", errHas: `apns: "SomethingNew" (HTTP 400)`},
		{name: "stream reset", setup: func(string) { r.apns.Fail(sandbox.Fault{Reset: true, Count: 1}) },
			outcome: providers.Retry, reason: "transport", errHas: "apns: post to 127.0.0.1:"},
		{name: "no answer before the deadline", setup: func(string) {
			r.apns.Fail(sandbox.Fault{Delay: 10 * time.Second, Count: 1})
		}, timeout: 300 * time.Millisecond, outcome: providers.Retry, reason: "timeout", errHas: "no answer before the deadline"},
	} {
		t.Run(c.name, func(t *testing.T) {
			token := hexToken(200 + i)
			if c.setup != nil {
				c.setup(token)
			}
			defer r.apns.Recover()
			timeout := c.timeout
			if timeout == 0 {
				timeout = sendTimeout
			}
			res := send(t, p, payloadCases()[0].normalized(t, token), timeout)
			checkResult(t, res, c.outcome, c.reason, c.errHas, token)
			if res.RetryAfter != c.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", res.RetryAfter, c.retryAfter)
			}
		})
	}
}

func checkResult(t *testing.T, res providers.Result, outcome providers.Outcome, reason, errHas, token string) {
	t.Helper()
	if res.Outcome != outcome || res.Reason != reason {
		t.Errorf("Send() = %v/%q (%v), want %v/%q", res.Outcome, res.Reason, res.Err, outcome, reason)
	}
	if (res.Err == nil) != (outcome == providers.Delivered) {
		t.Errorf("Err = %v with outcome %v", res.Err, res.Outcome)
	}
	if res.Err == nil {
		return
	}
	msg := res.Err.Error()
	t.Logf("%v/%s: %s", res.Outcome, res.Reason, msg)
	if errHas != "" && !strings.Contains(msg, errHas) {
		t.Errorf("Err = %q, want it to contain %q", msg, errHas)
	}
	if strings.Contains(msg, token) {
		t.Errorf("Err holds the device token: %q", msg)
	}
	if strings.Contains(msg, "shipped") || strings.Contains(msg, "Town Square") {
		t.Errorf("Err holds notification content: %q", msg)
	}
}

// TestSendTransportFailures covers requests that never get an answer from
// APNs: refused by the egress allowlist, and connection refused.
func TestSendTransportFailures(t *testing.T) {
	r := newRig(t)
	n := func(token string) *wire.Notification { return payloadCases()[0].normalized(t, token) }

	t.Run("host outside the allowlist", func(t *testing.T) {
		var denied []string
		eg, err := egress.New(egress.Config{CAFile: r.creds.CAFile}, []string{"api.push.apple.com"},
			func(host string) { denied = append(denied, host) })
		if err != nil {
			t.Fatal(err)
		}
		p, err := New(r.tokenConfig(), eg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		token := hexToken(300)
		res := send(t, p, n(token), sendTimeout)
		checkResult(t, res, providers.Failed, "egress_denied", "host is not in egress.allowed_hosts", token)
		if !errors.Is(res.Err, egress.ErrHostNotAllowed) {
			t.Errorf("Err = %v, want it to wrap egress.ErrHostNotAllowed", res.Err)
		}
		if got := len(r.apns.Requests()); got != 0 {
			t.Errorf("the look-alike received %d requests, want none", got)
		}
		if len(denied) != 1 || denied[0] != "127.0.0.1" {
			t.Errorf("egress denied %q, want [127.0.0.1]", denied)
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cfg := r.tokenConfig()
		cfg.Endpoint = "https://" + addr
		p := r.provider(t, cfg)
		token := hexToken(301)
		res := send(t, p, n(token), sendTimeout)
		checkResult(t, res, providers.Retry, "transport", "apns: post to "+addr+": ", token)
		if !strings.Contains(res.Err.Error(), "connection refused") {
			t.Errorf("Err = %q, want it to say connection refused", res.Err)
		}
	})

	t.Run("server certificate not trusted", func(t *testing.T) {
		eg, err := egress.New(egress.Config{}, []string{"127.0.0.1"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := New(r.tokenConfig(), eg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		token := hexToken(302)
		res := send(t, p, n(token), sendTimeout)
		// A configuration error (egress.ca_file): waiting does not help.
		checkResult(t, res, providers.Failed, egress.ReasonTLSUntrusted, "add its CA to egress.ca_file", token)
		if !errors.Is(res.Err, egress.ErrMisconfigured) {
			t.Errorf("%v does not match egress.ErrMisconfigured", res.Err)
		}
	})

	t.Run("error page of a gateway in between", func(t *testing.T) {
		ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html><body>502 Bad Gateway</body></html>")
		}))
		ts.EnableHTTP2 = true
		ts.StartTLS()
		defer ts.Close()
		ca := writeFile(t, t.TempDir(), "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}))
		eg, err := egress.New(egress.Config{CAFile: ca}, []string{"127.0.0.1"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg := r.tokenConfig()
		cfg.Endpoint = ts.URL
		p, err := New(cfg, eg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		token := hexToken(304)
		res := send(t, p, n(token), sendTimeout)
		checkResult(t, res, providers.Retry, "other", "apns: HTTP 502 without a reason", token)
		if res.RetryAfter != 3*time.Second {
			t.Errorf("RetryAfter = %v, want 3s", res.RetryAfter)
		}
	})

	t.Run("canceled", func(t *testing.T) {
		p := r.provider(t, r.tokenConfig())
		r.apns.Fail(sandbox.Fault{Delay: 10 * time.Second, Count: 1})
		defer r.apns.Recover()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		token := hexToken(303)
		res := p.Send(ctx, n(token))
		checkResult(t, res, providers.Retry, "canceled", "canceled", token)
	})
}

// TestSendOddToken checks that a token with characters a URL path cannot
// carry as is still reaches APNs intact, and is never echoed in errors.
func TestSendOddToken(t *testing.T) {
	r := newRig(t)
	p := r.provider(t, r.tokenConfig())
	for _, token := range []string{"ab?cd#ef gh", "50%off"} {
		res := send(t, p, payloadCases()[0].normalized(t, token), sendTimeout)
		if res.Outcome != providers.Delivered {
			t.Errorf("Send(%q) = %+v, want Delivered", token, res)
		}
		r.request(t, token)
	}

	// A token the look-alike rejects, and whose escaped form would show in
	// a transport error.
	token := "dead token/x"
	res := send(t, p, payloadCases()[0].normalized(t, token), sendTimeout)
	if res.Outcome == providers.Delivered {
		t.Fatalf("Send(%q) was delivered", token)
	}
	if res.Err != nil && (strings.Contains(res.Err.Error(), "dead token") || strings.Contains(res.Err.Error(), "dead%20token")) {
		t.Errorf("Err holds the token: %q", res.Err)
	}
}

func TestScrub(t *testing.T) {
	base := fmt.Errorf("post https://h/3/device/%s: %w", "tok%20en", context.DeadlineExceeded)
	err := scrub(base, "tok en", "tok%20en")
	if strings.Contains(err.Error(), "tok") && !strings.Contains(err.Error(), "token:"+wire.TokenHash("tok en")) {
		t.Errorf("scrub left the token: %q", err)
	}
	if !strings.Contains(err.Error(), "token:"+wire.TokenHash("tok en")) {
		t.Errorf("scrub = %q, want the token's hash", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("scrubbed error lost errors.Is")
	}
	if errors.Unwrap(err) != nil {
		t.Error("scrubbed error unwraps to the unscrubbed one")
	}
	if clean := errors.New("nothing here"); scrub(clean, "tok") != clean {
		t.Error("scrub replaced an error without a token")
	}
}

func TestClassifyWithoutReason(t *testing.T) {
	// What a proxy between the relay and Apple may answer: no APNs JSON.
	for _, c := range []struct {
		status  int
		outcome providers.Outcome
		reason  string
	}{
		{200, providers.Delivered, ""},
		{502, providers.Retry, "other"},
		{503, providers.Retry, "ServiceUnavailable"},
		{429, providers.Retry, "TooManyRequests"},
		// APNs gives every refusal a reason: one without is not APNs'.
		{410, providers.Failed, "wrong_endpoint"},
		{407, providers.Failed, "wrong_endpoint"},
		{404, providers.Failed, "wrong_endpoint"},
	} {
		res := classify(c.status, "", 0, "api.push.apple.com", "tok")
		if res.Outcome != c.outcome || res.Reason != c.reason {
			t.Errorf("classify(%d) = %v/%q, want %v/%q", c.status, res.Outcome, res.Reason, c.outcome, c.reason)
		}
	}
}

// TestSendUntrustedKey: a provider token signed by a key APNs does not know
// is a permanent failure, reported by the look-alike's own JWT check.
func TestSendUntrustedKey(t *testing.T) {
	r := newRig(t)
	der, err := x509.MarshalPKCS8PrivateKey(newECKey(t, elliptic.P256()))
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.tokenConfig()
	cfg.AuthKeyFile = writeFile(t, t.TempDir(), "AuthKey_other.p8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	p := r.provider(t, cfg)
	token := hexToken(400)
	res := send(t, p, payloadCases()[0].normalized(t, token), sendTimeout)
	checkResult(t, res, providers.Failed, "InvalidProviderToken", "apns: InvalidProviderToken (HTTP 403)", token)
}

// TestSendConcurrent shares one provider (one connection pool, one provider
// token) between many goroutines.
func TestSendConcurrent(t *testing.T) {
	r := newRig(t)
	p := r.provider(t, r.tokenConfig())
	const senders = 40
	results := make(chan providers.Result, senders)
	for i := range senders {
		n := payloadCases()[i%len(payloadCases())].normalized(t, hexToken(500+i))
		go func() { results <- send(t, p, n, sendTimeout) }()
	}
	for range senders {
		if res := <-results; res.Outcome != providers.Delivered {
			t.Errorf("Send() = %+v, want Delivered", res)
		}
	}
	if got := r.apns.Delivered(); got != senders {
		t.Errorf("Delivered() = %d, want %d", got, senders)
	}
}

func TestRenewToken(t *testing.T) {
	r := newRig(t)
	p := r.provider(t, r.tokenConfig())
	young := time.Now().Add(-5 * time.Minute).Unix()
	p.token.IssuedAt = young
	p.renewToken()
	if p.token.IssuedAt != young {
		t.Error("a provider token younger than 20 minutes was renewed")
	}
	p.token.IssuedAt = time.Now().Add(-21 * time.Minute).Unix()
	p.renewToken()
	if !p.token.Expired() {
		t.Error("an old provider token was not marked for renewal")
	}
	// Certificate auth has no token to renew.
	(&Provider{}).renewToken()
}
