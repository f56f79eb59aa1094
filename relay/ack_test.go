package relay_test

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/pushrelay/pushrelay/relay"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// ack posts the receipt the Mattermost server forwards for a push.
func (h *harness) ack(id, platform string, receivedAt int64) {
	h.t.Helper()
	body, _ := json.Marshal(model.PushNotificationAck{Id: id, ClientPlatform: platform, NotificationType: model.PushTypeMessage, ClientReceivedAt: receivedAt})
	if code, answer := h.raw(http.MethodPost, "/api/v1/ack", body); code != 200 || answer["status"] != "OK" {
		h.t.Fatalf("ack: HTTP %d %v", code, answer)
	}
}

func TestAckTurnsIntoDeliveryMetrics(t *testing.T) {
	h := start(t, "{}")
	for _, p := range []struct{ platform, ack string }{{"apple_rn", "ack-a"}, {"android_rn", "ack-f"}} {
		m := mmMessage(p.platform, "tok")
		m.AckId = p.ack
		if code, answer := h.push(m); code != 200 || answer["status"] != "OK" {
			t.Fatalf("push: HTTP %d %v", code, answer)
		}
	}
	h.ack("ack-a", "apple_rn", time.Now().UnixMilli())
	h.ack("ack-f", "android_rn", 0)                         // no received_at: timed on arrival
	h.ack("ack-a", "apple_rn", time.Now().UnixMilli())      // again: no longer remembered
	h.ack("never-sent", "apple_rn", time.Now().UnixMilli()) // not ours
	metrics := h.scrape()
	for _, want := range []string{
		`pushrelay_delivery_latency_seconds_count{app="apple_rn"} 1`,
		`pushrelay_delivery_latency_seconds_count{app="android_rn"} 1`,
		`pushrelay_acks_total{app="apple_rn"} 1`,
		`pushrelay_acks_total{app="android_rn"} 1`,
		`pushrelay_acks_total{app="unknown"} 2`,
		`pushrelay_notifications_total{app="apple_rn",outcome="delivered",provider="apns",type="message"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(metrics, `app="never-sent"`) || strings.Contains(metrics, `ack-a`) {
		t.Error("an ack id is a metric label")
	}
}

// ackProxy is a push proxy look-alike that accepts every push and keeps
// the acks it is sent.
type ackProxy struct {
	*httptest.Server
	caFile   string
	mu       sync.Mutex
	acks     []wire.Ack
	ackCode  int
	received chan struct{}
}

func newAckProxy(t *testing.T) *ackProxy {
	t.Helper()
	p := &ackProxy{ackCode: http.StatusOK, received: make(chan struct{}, 16)}
	p.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/send_push":
			fmt.Fprint(w, `{"status":"OK"}`)
		case "/api/v1/ack":
			var a wire.Ack
			if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
				http.Error(w, "bad json", http.StatusBadRequest)
				return
			}
			p.mu.Lock()
			p.acks = append(p.acks, a)
			code := p.ackCode
			p.mu.Unlock()
			w.WriteHeader(code)
			fmt.Fprint(w, `{"status":"OK"}`)
			p.received <- struct{}{}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.Close)
	p.caFile = filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startUpstream starts a relay whose only app forwards every platform to up.
func startUpstream(t *testing.T, up *ackProxy) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg, err := relay.ParseConfig(fmt.Appendf(nil, `
listen: 127.0.0.1:0
metrics: {listen: 127.0.0.1:0}
spool: {dir: %q}
egress: {ca_file: %q}
delivery: {timeout: 2s}
apps:
  - platform: "*"
    upstream: {url: %q}
`, filepath.Join(dir, "spool"), up.caFile, up.URL), nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := relay.NewServer(cfg, relay.TestProviders, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })
	return &harness{t: t, logs: logs, srv: srv, url: "http://" + srv.Addr()}
}

func TestAckForUpstreamAppIsForwarded(t *testing.T) {
	tests := []struct {
		name       string
		ackCode    int
		pushFirst  bool
		wantMetric []string
	}{
		{name: "delivered by the upstream", ackCode: http.StatusOK, pushFirst: true,
			wantMetric: []string{`pushrelay_acks_total{app="*"} 1`, `pushrelay_delivery_latency_seconds_count{app="*"} 1`}},
		{name: "not remembered: routed by platform", ackCode: http.StatusOK,
			wantMetric: []string{`pushrelay_acks_total{app="unknown"} 1`}},
		{name: "the upstream refuses it", ackCode: http.StatusBadGateway, pushFirst: true,
			wantMetric: []string{`pushrelay_provider_errors_total{provider="upstream",reason="ack_http_5xx"} 1`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newAckProxy(t)
			up.mu.Lock()
			up.ackCode = tt.ackCode
			up.mu.Unlock()
			h := startUpstream(t, up)
			if tt.pushFirst {
				m := mmMessage("apple_rn-v2", "tok")
				m.AckId = "ack-up"
				if code, answer := h.push(m); code != 200 || answer["status"] != "OK" {
					t.Fatalf("push: HTTP %d %v", code, answer)
				}
			}
			received := time.Now().UnixMilli()
			h.ack("ack-up", "apple_rn-v2", received)
			select {
			case <-up.received:
			case <-time.After(5 * time.Second):
				t.Fatal("the ack never reached the upstream")
			}
			up.mu.Lock()
			got := up.acks
			up.mu.Unlock()
			want := wire.Ack{ID: "ack-up", ReceivedAt: received, Platform: "apple_rn-v2", Type: "message"}
			if len(got) != 1 || got[0] != want {
				t.Errorf("the upstream got %+v, want %+v", got, want)
			}
			// The ack's metrics are counted before the answer; a forwarding
			// failure right after the upstream answered.
			deadline := time.Now().Add(5 * time.Second)
			for {
				metrics, missing := h.scrape(), ""
				for _, w := range tt.wantMetric {
					if !strings.Contains(metrics, w) {
						missing = w
					}
				}
				if missing == "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("metrics lack %s:\n%s", missing, metrics)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestAckWithoutARequiredFieldIsAnsweredLikeTheOldProxy: an ack without
// id, platform or type gets HTTP 200 with status FAIL, as from
// mattermost-push-proxy (a 4xx makes the Mattermost server answer the app
// with a 500), and the refusal is logged and counted, without its values.
func TestAckWithoutARequiredFieldIsAnsweredLikeTheOldProxy(t *testing.T) {
	h := start(t, "{}")
	for _, tt := range []struct{ body, missing string }{
		{`{"platform":"apple_rn","type":"message","received_at":1}`, "id"},
		{`{"id":"ack-secret-id","type":"message"}`, "platform"},
		{`{"id":"ack-secret-id","platform":"apple_rn"}`, "type"},
	} {
		code, answer := h.raw(http.MethodPost, "/api/v1/ack", []byte(tt.body))
		if code != http.StatusOK || answer["status"] != "FAIL" || answer["error"] != tt.missing+" is missing" {
			t.Errorf("%s: HTTP %d %v, want 200 FAIL %q", tt.body, code, answer, tt.missing+" is missing")
		}
		if !strings.Contains(h.logs.String(), `"missing":"`+tt.missing+`"`) {
			t.Errorf("no log line names the missing %s:\n%s", tt.missing, h.logs.String())
		}
	}
	if strings.Contains(h.logs.String(), "ack-secret-id") {
		t.Error("the log holds the ack's id")
	}
	if !strings.Contains(h.scrape(), `pushrelay_ingress_rejected_total{reason="bad_request"} 3`) {
		t.Error("the refusals are not counted")
	}
}
