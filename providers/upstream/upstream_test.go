package upstream_test

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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/upstream"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// proxy is a push proxy look-alike: it answers send_push as told and keeps
// what it received.
type proxy struct {
	*httptest.Server
	mu     sync.Mutex
	got    []wire.Notification
	answer func(w http.ResponseWriter)
}

func newProxy(t *testing.T) (*proxy, *egress.Egress) {
	t.Helper()
	p := &proxy{}
	p.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/send_push" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		var n wire.Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.got = append(p.got, n)
		answer := p.answer
		p.mu.Unlock()
		answer(w)
	}))
	t.Cleanup(p.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	eg, err := egress.New(egress.Config{CAFile: ca}, []string{"127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, eg
}

func (p *proxy) reply(status int, body string, header ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answer = func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

func notification() *wire.Notification {
	return &wire.Notification{Platform: "apple_rn", AppVersion: 2, ServerID: "srv", DeviceID: "secret-token",
		Type: wire.TypeMessage, Message: "You've received a new message.", IsIDLoaded: true, Signature: "sig", AckID: "ack"}
}

func TestSendClassifiesEveryAnswer(t *testing.T) {
	p, eg := newProxy(t)
	prov, err := upstream.New(upstream.Config{URL: p.URL + "/"}, eg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		status  int
		body    string
		header  []string
		outcome providers.Outcome
		reason  string
		after   time.Duration
	}{
		{"OK", 200, `{"status":"OK"}`, nil, providers.Delivered, "", 0},
		{"REMOVE", 200, `{"status":"REMOVE"}`, nil, providers.TokenDead, "REMOVE", 0},
		{"FAIL", 200, `{"status":"FAIL","error":"bad secret-token"}`, nil, providers.Failed, "FAIL", 0},
		{"503 with Retry-After", 503, ``, []string{"Retry-After", "7"}, providers.Retry, "http_5xx", 7 * time.Second},
		{"429", 429, ``, nil, providers.Retry, "http_4xx", 0},
		{"401", 401, ``, nil, providers.Failed, "http_4xx", 0},
		{"not a push answer", 200, `<html>`, nil, providers.Failed, "bad_answer", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.reply(tt.status, tt.body, tt.header...)
			res := prov.Send(context.Background(), notification())
			if res.Outcome != tt.outcome || res.Reason != tt.reason || res.RetryAfter != tt.after {
				t.Errorf("got %v %q after %s (%v), want %v %q after %s", res.Outcome, res.Reason, res.RetryAfter, res.Err, tt.outcome, tt.reason, tt.after)
			}
			if res.Err != nil && strings.Contains(res.Err.Error(), "secret-token") {
				t.Errorf("error names the device token: %v", res.Err)
			}
		})
	}
	p.mu.Lock()
	first := p.got[0]
	p.mu.Unlock()
	if first.Platform != "apple_rn-v2" || first.DeviceID != "secret-token" || !first.IsIDLoaded || first.Signature != "sig" {
		t.Errorf("forwarded notification: %+v", first)
	}
}

func TestSendTransportFailures(t *testing.T) {
	p, eg := newProxy(t)
	p.reply(200, `{"status":"OK"}`)

	release := make(chan struct{})
	slow := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer slow.Close()
	defer close(release)
	slowProv, _ := upstream.New(upstream.Config{URL: slow.URL}, eg)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// The slow server's certificate is httptest's shared one, trusted via the CA file.
	if res := slowProv.Send(ctx, notification()); res.Outcome != providers.Retry || res.Reason != "timeout" {
		t.Errorf("timeout: got %v %q %v", res.Outcome, res.Reason, res.Err)
	}

	closed := httptest.NewTLSServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	closedProv, _ := upstream.New(upstream.Config{URL: closedURL}, eg)
	if res := closedProv.Send(context.Background(), notification()); res.Outcome != providers.Retry || res.Reason != "transport" {
		t.Errorf("connection refused: got %v %q %v", res.Outcome, res.Reason, res.Err)
	}

	denied, _ := upstream.New(upstream.Config{URL: "https://push.example.com"}, eg)
	res := denied.Send(context.Background(), notification())
	if res.Outcome != providers.Failed || res.Reason != "egress_denied" || !errors.Is(res.Err, egress.ErrHostNotAllowed) {
		t.Errorf("outside the allowlist: got %v %q %v", res.Outcome, res.Reason, res.Err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"", "upstream.url: required"},
		{"ftp://push.example.com", `upstream.url: scheme "ftp"`},
		{"https://", "upstream.url: the URL has no host"},
		{"https://push.example.com/?x=1", "upstream.url: must be a base URL"},
	} {
		err := upstream.Config{URL: tt.url}.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%q) = %v, want %q", tt.url, err, tt.want)
		}
	}
	if err := (upstream.Config{URL: "https://push.mattermost.com"}).Validate(); err != nil {
		t.Errorf("valid URL refused: %v", err)
	}
}

func ExampleNew() {
	eg, _ := egress.New(egress.Config{}, nil, nil)
	p, err := upstream.New(upstream.Config{URL: "https://push.mattermost.com"}, eg)
	fmt.Println(p != nil, err)
	// Output: true <nil>
}
