package sandbox_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/certificate"
	"github.com/sideshow/apns2/token"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// trustingTransport speaks HTTP/2 (and HTTP/1.1 when the server offers it)
// to the sandboxes, presenting certs if any.
func trustingTransport(t *testing.T, certPEM []byte, certs ...tls.Certificate) *http.Transport {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("CertPEM holds no certificate")
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: certs},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	err    error
}

// post sends body to url with the headers hdr (pairs of name, value).
func post(ctx context.Context, c *http.Client, url, body string, hdr ...string) answer {
	return do(ctx, c, http.MethodPost, url, body, hdr...)
}

// do sends a request and decodes its JSON answer, if any.
func do(ctx context.Context, c *http.Client, method, url, body string, hdr ...string) answer {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			a.err = fmt.Errorf("answer %q is not JSON: %v", raw, err)
		}
	}
	return a
}

const alert = `{"aps":{"alert":"hello","sound":"default"},"type":"message"}`

func TestAPNs(t *testing.T) {
	s := sandbox.NewAPNs()
	defer s.Close()
	s.KillToken("gone", "Unregistered")
	s.KillToken("bad", "BadDeviceToken")
	s.KillToken("other-app", "DeviceTokenNotForTopic")
	c := &http.Client{Transport: trustingTransport(t, s.CertPEM())}
	topic := []string{"apns-topic", "com.example.app"}
	with := func(extra ...string) []string { return append(append([]string{}, topic...), extra...) }

	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		hdr        []string
		wantStatus int
		wantReason string
	}{
		{"delivered", "", "/3/device/abc123", alert, with("apns-push-type", "alert", "apns-priority", "10"), 200, ""},
		{"echoes apns-id", "", "/3/device/abc123", alert, with("apns-id", "123E4567-E89B-12D3-A456-426614174000"), 200, ""},
		{"voip payload up to 5120 bytes", "", "/3/device/abc123", bigPayload(5000), []string{"apns-topic", "com.example.app.voip", "apns-push-type", "voip"}, 200, ""},
		{"missing topic", "", "/3/device/abc123", alert, nil, 400, "MissingTopic"},
		{"not JSON", "", "/3/device/abc123", `{"aps":`, topic, 400, "BadPayload"},
		{"no aps", "", "/3/device/abc123", `{"type":"message"}`, topic, 400, "PayloadEmpty"},
		{"aps not a dictionary", "", "/3/device/abc123", `{"aps":"alert"}`, topic, 400, "PayloadEmpty"},
		{"aps null", "", "/3/device/abc123", `{"aps":null}`, topic, 400, "PayloadEmpty"},
		{"payload not an object", "", "/3/device/abc123", `[{"aps":{}}]`, topic, 400, "BadPayload"},
		{"empty", "", "/3/device/abc123", ``, topic, 400, "PayloadEmpty"},
		{"too large", "", "/3/device/abc123", bigPayload(4097), topic, 413, "PayloadTooLarge"},
		{"voip too large", "", "/3/device/abc123", bigPayload(5121), []string{"apns-topic", "a.b.voip", "apns-push-type", "voip"}, 413, "PayloadTooLarge"},
		{"voip topic without .voip", "", "/3/device/abc123", alert, with("apns-push-type", "voip"), 400, "BadTopic"},
		{"bad priority", "", "/3/device/abc123", alert, with("apns-priority", "7"), 400, "BadPriority"},
		{"bad push type", "", "/3/device/abc123", alert, with("apns-push-type", "shout"), 400, "InvalidPushType"},
		{"bad expiration", "", "/3/device/abc123", alert, with("apns-expiration", "soon"), 400, "BadExpirationDate"},
		{"bad apns-id", "", "/3/device/abc123", alert, with("apns-id", "not-a-uuid"), 400, "BadMessageId"},
		{"duplicate headers", "", "/3/device/abc123", alert, with("apns-priority", "10", "apns-priority", "5"), 400, "DuplicateHeaders"},
		{"unregistered", "", "/3/device/gone", alert, topic, 410, "Unregistered"},
		{"bad device token", "", "/3/device/bad", alert, topic, 400, "BadDeviceToken"},
		{"token not for topic", "", "/3/device/other-app", alert, topic, 400, "DeviceTokenNotForTopic"},
		{"missing device token", "", "/3/device/", alert, topic, 400, "MissingDeviceToken"},
		{"bad path", "", "/2/device/abc123", alert, topic, 404, "BadPath"},
		{"wrong method", http.MethodPut, "/3/device/abc123", alert, topic, 405, "MethodNotAllowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.Reset()
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			a := do(t.Context(), c, method, s.URL()+tc.path, tc.body, tc.hdr...)
			if a.err != nil {
				t.Fatal(a.err)
			}
			if a.status != tc.wantStatus {
				t.Fatalf("status %d %v, want %d", a.status, a.body, tc.wantStatus)
			}
			if got := a.body["reason"]; tc.wantReason != "" && got != tc.wantReason {
				t.Errorf("reason %v, want %s", got, tc.wantReason)
			}
			if a.header.Get("apns-id") == "" {
				t.Error("no apns-id in the answer")
			}
			if tc.wantStatus == 410 {
				ts, ok := a.body["timestamp"].(float64)
				if !ok || ts < float64(time.Now().Add(-time.Minute).UnixMilli()) {
					t.Errorf("410 without a timestamp in milliseconds: %v", a.body)
				}
			}
			reqs := s.Requests()
			if len(reqs) != 1 {
				t.Fatalf("recorded %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Proto != "HTTP/2.0" || r.Status != tc.wantStatus || r.Body == nil && tc.body != "" {
				t.Errorf("recorded %+v", r)
			}
			if tc.wantStatus == 200 {
				if r.Token != "abc123" || string(r.Body) != tc.body || r.Header.Get("apns-topic") == "" {
					t.Errorf("recorded %+v", r)
				}
				if id := r.Header.Get("apns-id"); id != "" && a.header.Get("apns-id") != id {
					t.Errorf("apns-id %q not echoed: %q", id, a.header.Get("apns-id"))
				}
				if s.Delivered() != 1 {
					t.Errorf("Delivered() = %d, want 1", s.Delivered())
				}
			} else if s.Delivered() != 0 {
				t.Errorf("Delivered() = %d after a refusal", s.Delivered())
			}
		})
	}
}

// bigPayload is a valid APNs payload of exactly n bytes.
func bigPayload(n int) string {
	p := `{"aps":{"alert":""}}`
	return strings.Replace(p, `""`, `"`+strings.Repeat("x", n-len(p))+`"`, 1)
}

func TestAPNsFaults(t *testing.T) {
	s := sandbox.NewAPNs()
	defer s.Close()
	c := &http.Client{Transport: trustingTransport(t, s.CertPEM())}
	hdr := []string{"apns-topic", "com.example.app"}
	push := func(ctx context.Context) answer { return post(ctx, c, s.URL()+"/3/device/abc", alert, hdr...) }

	t.Run("count and Retry-After", func(t *testing.T) {
		s.Reset()
		s.Fail(sandbox.Fault{Status: 503, RetryAfter: 1500 * time.Millisecond, Count: 2})
		for i := range 2 {
			a := push(t.Context())
			if a.err != nil || a.status != 503 || a.body["reason"] != "ServiceUnavailable" || a.header.Get("Retry-After") != "2" {
				t.Fatalf("push %d: %d %v %v Retry-After=%q", i, a.status, a.body, a.err, a.header.Get("Retry-After"))
			}
		}
		if a := push(t.Context()); a.status != 200 {
			t.Fatalf("after Count failures: %d %v", a.status, a.body)
		}
		if got := statuses(s.Requests()); got != "[503 503 200]" {
			t.Errorf("recorded statuses %s", got)
		}
	})
	t.Run("reason and Recover", func(t *testing.T) {
		s.Fail(sandbox.Fault{Status: 429, Reason: "TooManyProviderTokenUpdates"})
		for range 3 {
			if a := push(t.Context()); a.status != 429 || a.body["reason"] != "TooManyProviderTokenUpdates" {
				t.Fatalf("got %d %v", a.status, a.body)
			}
		}
		s.Recover()
		if a := push(t.Context()); a.status != 200 {
			t.Fatalf("after Recover: %d %v", a.status, a.body)
		}
	})
	t.Run("reset", func(t *testing.T) {
		s.Reset()
		s.Fail(sandbox.Fault{Reset: true, Count: 1})
		if a := push(t.Context()); a.err == nil {
			t.Fatalf("reset answered %d %v", a.status, a.body)
		}
		if a := push(t.Context()); a.status != 200 {
			t.Fatalf("after the reset: %d %v %v", a.status, a.body, a.err)
		}
		if got := statuses(s.Requests()); got != "[0 200]" {
			t.Errorf("recorded statuses %s", got)
		}
	})
	t.Run("late but normal", func(t *testing.T) {
		s.Fail(sandbox.Fault{Delay: 200 * time.Millisecond, Count: 1})
		start := time.Now()
		if a := push(t.Context()); a.status != 200 || time.Since(start) < 200*time.Millisecond {
			t.Fatalf("got %d after %v", a.status, time.Since(start))
		}
	})
	t.Run("a random fraction, recording off", func(t *testing.T) {
		s.Reset()
		s.SetRecording(false)
		defer s.SetRecording(true)
		s.Fail(sandbox.Fault{Status: 503, Rate: 0.5, Delay: 10 * time.Millisecond})
		defer s.Recover()
		answered := map[int]int{}
		start := time.Now()
		for range 100 {
			a := push(t.Context())
			if a.err != nil || a.status == 503 && a.body["reason"] != "ServiceUnavailable" {
				t.Fatalf("got %d %v %v", a.status, a.body, a.err)
			}
			answered[a.status]++
		}
		// 100 fair coins all landing the same way: one chance in 2^99.
		if answered[200] == 0 || answered[503] == 0 || answered[200]+answered[503] != 100 {
			t.Errorf("answers by status %v, want some 200 and some 503", answered)
		}
		if time.Since(start) < 100*10*time.Millisecond {
			t.Errorf("100 pushes took %v: not every one was delayed", time.Since(start))
		}
		if got := s.Delivered(); got != answered[200] || len(s.Requests()) != 0 {
			t.Errorf("Delivered() = %d, %d recorded; want %d, none", got, len(s.Requests()), answered[200])
		}
	})
	t.Run("delay ends with the client's context", func(t *testing.T) {
		s.Fail(sandbox.Fault{Delay: time.Hour, Status: 500})
		defer s.Recover()
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if a := push(ctx); !errors.Is(a.err, context.DeadlineExceeded) {
			t.Fatalf("got %d %v", a.status, a.err)
		}
	})
}

func statuses(reqs []sandbox.APNsRequest) string {
	var out []int
	for _, r := range reqs {
		out = append(out, r.Status)
	}
	return fmt.Sprint(out)
}

func TestAPNsCloseEndsDelays(t *testing.T) {
	s := sandbox.NewAPNs()
	c := &http.Client{Transport: trustingTransport(t, s.CertPEM())}
	s.Fail(sandbox.Fault{Delay: time.Hour})
	done := make(chan answer)
	go func() { done <- post(context.Background(), c, s.URL()+"/3/device/abc", alert, "apns-topic", "x") }()
	for len(s.Requests()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for a delayed request")
	}
	if a := <-done; a.err == nil {
		t.Errorf("delayed request answered %d", a.status)
	}
}

// es256 signs claims with key as an APNs provider token.
func es256(t *testing.T, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := enc(map[string]string{"alg": "ES256", "kid": kid}) + "." + enc(claims)
	h := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestAPNsTrustKey(t *testing.T) {
	s := sandbox.NewAPNs()
	defer s.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s.TrustKey("KEY1234567", "TEAM123456", &key.PublicKey)
	now := time.Now().Unix()
	good := map[string]any{"iss": "TEAM123456", "iat": now}
	c := &http.Client{Transport: trustingTransport(t, s.CertPEM())}

	creds, err := sandbox.WriteCredentials(t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := certificate.FromPemFile(creds.APNsCertFile, "")
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Transport: trustingTransport(t, s.CertPEM(), cert)}

	tests := []struct {
		name       string
		client     *http.Client
		authz      string
		wantStatus int
		wantReason string
	}{
		{"signed by the trusted key", c, "bearer " + es256(t, key, "KEY1234567", good), 200, ""},
		{"Bearer in any case", c, "Bearer " + es256(t, key, "KEY1234567", good), 200, ""},
		{"no token", c, "", 403, "MissingProviderToken"},
		{"not a JWT", c, "bearer nonsense", 403, "InvalidProviderToken"},
		{"signed by another key", c, "bearer " + es256(t, other, "KEY1234567", good), 403, "InvalidProviderToken"},
		{"unknown key id", c, "bearer " + es256(t, key, "KEY7654321", good), 403, "InvalidProviderToken"},
		{"other team", c, "bearer " + es256(t, key, "KEY1234567", map[string]any{"iss": "TEAM654321", "iat": now}), 403, "InvalidProviderToken"},
		{"no iat", c, "bearer " + es256(t, key, "KEY1234567", map[string]any{"iss": "TEAM123456"}), 403, "InvalidProviderToken"},
		{"older than an hour", c, "bearer " + es256(t, key, "KEY1234567", map[string]any{"iss": "TEAM123456", "iat": now - 3700}), 403, "ExpiredProviderToken"},
		{"client certificate instead", withCert, "", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.Reset()
			hdr := []string{"apns-topic", "com.example.app"}
			if tc.authz != "" {
				hdr = append(hdr, "authorization", tc.authz)
			}
			a := post(t.Context(), tc.client, s.URL()+"/3/device/abc", alert, hdr...)
			if a.err != nil || a.status != tc.wantStatus || tc.wantReason != "" && a.body["reason"] != tc.wantReason {
				t.Fatalf("got %d %v %v, want %d %s", a.status, a.body, a.err, tc.wantStatus, tc.wantReason)
			}
			r := s.Requests()[0]
			if tc.client == withCert && r.ClientCert != "Apple Push Services: "+creds.Topic {
				t.Errorf("recorded client certificate %q", r.ClientCert)
			}
			if tc.client == c && r.ClientCert != "" {
				t.Errorf("recorded client certificate %q without one", r.ClientCert)
			}
		})
	}
}

// TestAPNsWithApns2 drives the look-alike with the real apns2 client, using
// the files WriteCredentials wrote, with token and with certificate auth.
func TestAPNsWithApns2(t *testing.T) {
	s := sandbox.NewAPNs()
	defer s.Close()
	creds, err := sandbox.WriteCredentials(t.TempDir(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(creds.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	authKey, err := token.AuthKeyFromFile(creds.APNsKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	tokenClient := apns2.NewTokenClient(&token.Token{AuthKey: authKey, KeyID: creds.KeyID, TeamID: creds.TeamID})
	tokenClient.HTTPClient = &http.Client{Transport: trustingTransport(t, caPEM)}
	tokenClient.Host = s.URL()

	cert, err := certificate.FromPemFile(creds.APNsCertFile, "")
	if err != nil {
		t.Fatal(err)
	}
	certClient := apns2.NewClient(cert)
	certClient.HTTPClient = &http.Client{Transport: trustingTransport(t, caPEM, cert)}
	certClient.Host = s.URL()

	s.KillToken("dead", "")
	for _, tc := range []struct {
		name   string
		client *apns2.Client
		topic  string
	}{
		{"token auth", tokenClient, "com.mattermost.rn"},
		{"certificate auth, topic from the certificate", certClient, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Reset()
			n := &apns2.Notification{DeviceToken: "0123abcd", Topic: tc.topic, Payload: []byte(alert), Priority: 10}
			res, err := tc.client.PushWithContext(t.Context(), n)
			if err != nil || !res.Sent() || res.ApnsID == "" {
				t.Fatalf("push: %+v %v", res, err)
			}
			n.DeviceToken = "dead"
			res, err = tc.client.PushWithContext(t.Context(), n)
			if err != nil || res.StatusCode != 410 || res.Reason != apns2.ReasonUnregistered || res.Timestamp.IsZero() {
				t.Fatalf("push to a dead token: %+v %v", res, err)
			}
			reqs := s.Requests()
			if len(reqs) != 2 || reqs[0].Proto != "HTTP/2.0" || reqs[0].Token != "0123abcd" {
				t.Fatalf("recorded %+v", reqs)
			}
			if tc.client == tokenClient && !strings.HasPrefix(reqs[0].Header.Get("authorization"), "bearer ") {
				t.Errorf("no provider token recorded: %v", reqs[0].Header)
			}
		})
	}
}

func TestAPNsConcurrent(t *testing.T) {
	s := sandbox.NewAPNs()
	defer s.Close()
	c := &http.Client{Transport: trustingTransport(t, s.CertPEM())}
	s.Fail(sandbox.Fault{Status: 500, Count: 10})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			post(t.Context(), c, s.URL()+fmt.Sprintf("/3/device/t%d", i), alert, "apns-topic", "x")
			_ = s.Requests()
			_ = s.Delivered()
		})
	}
	wg.Wait()
	if got := len(s.Requests()); got != 50 || s.Delivered() != 40 {
		t.Errorf("recorded %d, delivered %d; want 50, 40", got, s.Delivered())
	}
}

// fcmClient is the firebase SDK's messaging client wired to the look-alike
// the way a relay would: the service account's token_uri for OAuth, the
// sandbox's certificate trusted, the endpoint overridden.
func fcmClient(t *testing.T, s *sandbox.FCM, creds sandbox.Credentials) (*messaging.Client, oauth2.TokenSource) {
	t.Helper()
	ctx := context.Background()
	base := trustingTransport(t, s.CertPEM())
	saJSON, err := os.ReadFile(creds.ServiceAccountFile)
	if err != nil {
		t.Fatal(err)
	}
	tokenCtx := context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: base})
	gc, err := google.CredentialsFromJSONWithType(tokenCtx, saJSON, google.ServiceAccount, fcmScope)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &oauth2.Transport{Source: gc.TokenSource, Base: base}}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: creds.ProjectID},
		option.WithHTTPClient(hc), option.WithEndpoint(s.URL()+"/v1"))
	if err != nil {
		t.Fatal(err)
	}
	mc, err := app.Messaging(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return mc, gc.TokenSource
}

func TestFCMWithFirebaseSDK(t *testing.T) {
	s := sandbox.NewFCM()
	defer s.Close()
	creds, err := sandbox.WriteCredentials(t.TempDir(), nil, s)
	if err != nil {
		t.Fatal(err)
	}
	mc, ts := fcmClient(t, s, creds)
	s.KillToken("gone", "UNREGISTERED")
	s.KillToken("mismatch", "SENDER_ID_MISMATCH")
	msg := func(token string) *messaging.Message {
		return &messaging.Message{
			Token:   token,
			Data:    map[string]string{"type": "message", "ack_id": "a1"},
			Android: &messaging.AndroidConfig{Priority: "high"},
		}
	}

	tests := []struct {
		name  string
		fault *sandbox.Fault
		msg   *messaging.Message
		check func(error) bool // nil: the send must succeed
		want  string           // recorded statuses
	}{
		{"delivered", nil, msg("tok-1"), nil, "[200]"},
		{"unregistered", nil, msg("gone"), messaging.IsUnregistered, "[404]"},
		{"sender id mismatch", nil, msg("mismatch"), messaging.IsSenderIDMismatch, "[403]"},
		{"no device token", nil, &messaging.Message{Topic: "news"}, messaging.IsInvalidArgument, "[400]"},
		// The SDK retries a 503 unless Retry-After is beyond its 2-minute cap.
		{"unavailable", &sandbox.Fault{Status: 503, RetryAfter: 3 * time.Minute}, msg("tok-1"), messaging.IsUnavailable, "[503]"},
		{"unavailable once, SDK retries", &sandbox.Fault{Status: 503, Count: 1}, msg("tok-1"), nil, "[503 200]"},
		{"internal", &sandbox.Fault{Status: 500, Count: 1}, msg("tok-1"), messaging.IsInternal, "[500]"},
		{"quota exceeded", &sandbox.Fault{Status: 429, RetryAfter: time.Second, Count: 1}, msg("tok-1"), messaging.IsQuotaExceeded, "[429]"},
		{"reset once, SDK retries", &sandbox.Fault{Reset: true, Count: 1}, msg("tok-1"), nil, "[0 200]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.Reset()
			s.Recover()
			if tc.fault != nil {
				s.Fail(*tc.fault)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			name, err := mc.Send(ctx, tc.msg)
			switch {
			case tc.check == nil && err != nil:
				t.Fatalf("Send: %v", err)
			case tc.check == nil && !strings.HasPrefix(name, "projects/"+creds.ProjectID+"/messages/"):
				t.Errorf("message name %q", name)
			case tc.check != nil && !tc.check(err):
				t.Fatalf("Send error %v is not classified as expected", err)
			}
			reqs := s.Requests()
			var got []int
			for _, r := range reqs {
				got = append(got, r.Status)
			}
			if fmt.Sprint(got) != tc.want {
				t.Fatalf("recorded statuses %v, want %s", got, tc.want)
			}
			last := reqs[len(reqs)-1]
			tok, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			if last.Project != creds.ProjectID || last.Token != tc.msg.Token || last.Proto != "HTTP/2.0" ||
				last.Header.Get("Authorization") != "Bearer "+tok.AccessToken {
				t.Errorf("recorded %+v", last)
			}
			if tc.check == nil && s.Delivered() != 1 {
				t.Errorf("Delivered() = %d, want 1", s.Delivered())
			}
			if tc.check == nil && !bytes.Contains(last.Body, []byte(`"ack_id":"a1"`)) {
				t.Errorf("recorded body %s", last.Body)
			}
		})
	}
	s.Reset()
	if _, err := mc.Send(t.Context(), msg("tok-2")); err != nil || s.TokenFetches() != 0 {
		t.Errorf("the access token was not reused: %v, %d fetches", err, s.TokenFetches())
	}
	if _, err := mc.SendDryRun(t.Context(), msg("tok-2")); err != nil || s.Delivered() != 1 {
		t.Errorf("dry run: %v, Delivered() = %d, want 1", err, s.Delivered())
	}
	s.SetRecording(false)
	if _, err := mc.Send(t.Context(), msg("tok-3")); err != nil || s.Delivered() != 2 || len(s.Requests()) != 2 {
		t.Errorf("recording off: %v, Delivered() = %d, %d recorded; want 2 delivered, 2 recorded before", err, s.Delivered(), len(s.Requests()))
	}
}

func TestFCMTokenEndpoint(t *testing.T) {
	s := sandbox.NewFCM()
	defer s.Close()
	creds, err := sandbox.WriteCredentials(t.TempDir(), nil, s)
	if err != nil {
		t.Fatal(err)
	}
	saJSON, _ := os.ReadFile(creds.ServiceAccountFile)
	var sa map[string]string
	if err := json.Unmarshal(saJSON, &sa); err != nil {
		t.Fatal(err)
	}
	if sa["type"] != "service_account" || sa["token_uri"] != s.TokenURL() || sa["client_email"] != creds.ClientEmail || sa["project_id"] != creds.ProjectID {
		t.Fatalf("service account %v", sa)
	}
	// The same account signed with a key the sandbox does not trust.
	stranger, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(stranger)
	sa["private_key"] = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	strangerJSON, _ := json.Marshal(sa)
	// The right key, but a token_uri that is not the sandbox's (wrong aud).
	sa2 := map[string]string{}
	json.Unmarshal(saJSON, &sa2)
	sa2["token_uri"] = s.TokenURL() + "?x=1"
	wrongAud, _ := json.Marshal(sa2)

	// A plain HTTP/1.1 client: Google serves both protocols.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CertPEM())
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(h1.CloseIdleConnections)
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, h1)

	tests := []struct {
		name    string
		json    []byte
		scope   string
		wantErr string
	}{
		{"trusted key", saJSON, fcmScope, ""},
		{"untrusted key", strangerJSON, fcmScope, "invalid_grant"},
		{"wrong audience", wrongAud, fcmScope, "invalid_grant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.Reset()
			gc, err := google.CredentialsFromJSONWithType(ctx, tc.json, google.ServiceAccount, tc.scope)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := gc.TokenSource.Token()
			if tc.wantErr != "" {
				var re *oauth2.RetrieveError
				if !errors.As(err, &re) || !bytes.Contains(re.Body, []byte(`"error":"`+tc.wantErr+`"`)) || re.Response.StatusCode != 400 {
					t.Fatalf("got %v, want %s", err, tc.wantErr)
				}
				if s.TokenFetches() != 0 {
					t.Errorf("TokenFetches() = %d after a refusal", s.TokenFetches())
				}
				return
			}
			if err != nil || tok.AccessToken == "" || tok.TokenType != "Bearer" || time.Until(tok.Expiry) < 50*time.Minute {
				t.Fatalf("token %+v %v", tok, err)
			}
			if s.TokenFetches() != 1 {
				t.Errorf("TokenFetches() = %d, want 1", s.TokenFetches())
			}
		})
	}
}

func TestFCMAuthorization(t *testing.T) {
	s := sandbox.NewFCM()
	defer s.Close()
	c := &http.Client{Transport: trustingTransport(t, s.CertPEM())}
	send := s.URL() + "/v1/projects/p1/messages:send"
	body := `{"message":{"token":"tok","data":{"k":"v"}}}`
	issue := func(scope string) string {
		// Before TrustKey, any well-formed assertion is accepted.
		claims := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"x","scope":"` + scope + `"}`))
		a := post(t.Context(), c, s.TokenURL(), "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=e30."+claims+".c2ln",
			"Content-Type", "application/x-www-form-urlencoded")
		tok, _ := a.body["access_token"].(string)
		if a.status != 200 || tok == "" || a.body["token_type"] != "Bearer" || a.body["expires_in"] != 3600.0 {
			t.Fatalf("token endpoint: %d %v %v", a.status, a.body, a.err)
		}
		return tok
	}
	good := issue(fcmScope)
	narrow := issue("https://www.googleapis.com/auth/userinfo.email")

	tests := []struct {
		name           string
		authz          string
		body           string
		wantStatus     int
		wantStatusName string
	}{
		{"issued token", "Bearer " + good, body, 200, ""},
		{"no token", "", body, 401, "UNAUTHENTICATED"},
		{"unknown token", "Bearer ya29.forged", body, 401, "UNAUTHENTICATED"},
		{"token without the FCM scope", "Bearer " + narrow, body, 403, "PERMISSION_DENIED"},
		{"no message.token", "Bearer " + good, `{"message":{"data":{"k":"v"}}}`, 400, "INVALID_ARGUMENT"},
		{"not JSON", "Bearer " + good, `{"message":`, 400, "INVALID_ARGUMENT"},
		{"data value not a string", "Bearer " + good, `{"message":{"token":"tok","data":{"badge":1}}}`, 400, "INVALID_ARGUMENT"},
		{"data value null", "Bearer " + good, `{"message":{"token":"tok","data":{"badge":null}}}`, 400, "INVALID_ARGUMENT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.Reset()
			var hdr []string
			if tc.authz != "" {
				hdr = []string{"Authorization", tc.authz}
			}
			a := post(t.Context(), c, send, tc.body, hdr...)
			if a.err != nil || a.status != tc.wantStatus {
				t.Fatalf("got %d %v %v, want %d", a.status, a.body, a.err, tc.wantStatus)
			}
			if tc.wantStatus == 200 {
				if name, _ := a.body["name"].(string); !strings.HasPrefix(name, "projects/p1/messages/") {
					t.Errorf("answer %v", a.body)
				}
			} else {
				e, _ := a.body["error"].(map[string]any)
				if e["status"] != tc.wantStatusName || e["code"] != float64(tc.wantStatus) || e["message"] == "" {
					t.Errorf("error body %v", a.body)
				}
			}
			if r := s.Requests(); len(r) != 1 || r[0].Project != "p1" || r[0].Status != tc.wantStatus {
				t.Errorf("recorded %+v", r)
			}
		})
	}
}

func TestWriteCredentials(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "creds")
	creds, err := sandbox.WriteCredentials(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(creds.KeyID) != 10 || len(creds.TeamID) != 10 || creds.Dir != dir {
		t.Errorf("credentials %+v", creds)
	}
	for _, f := range []string{creds.CAFile, creds.APNsKeyFile, creds.APNsCertFile, creds.ServiceAccountFile} {
		fi, err := os.Stat(f)
		if err != nil || filepath.Dir(f) != dir || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, fi, err)
		}
	}
	ca, _ := os.ReadFile(creds.CAFile)
	block, _ := pem.Decode(ca)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || cert.VerifyHostname("127.0.0.1") != nil {
		t.Errorf("CA file: %v", err)
	}
	p8, _ := os.ReadFile(creds.APNsKeyFile)
	if block, _ := pem.Decode(p8); block == nil || block.Type != "PRIVATE KEY" {
		t.Errorf("APNs key file %s", p8)
	}
	saJSON, _ := os.ReadFile(creds.ServiceAccountFile)
	var sa map[string]string
	json.Unmarshal(saJSON, &sa)
	if sa["token_uri"] != "https://oauth2.googleapis.com/token" || len(sa["client_id"]) != 21 {
		t.Errorf("service account without an FCM sandbox: %v", sa)
	}
}
