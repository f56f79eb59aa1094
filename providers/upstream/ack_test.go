package upstream_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/upstream"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// ackServer answers /api/v1/ack with the status told and keeps what it got.
type ackServer struct {
	*httptest.Server
	mu     sync.Mutex
	got    []wire.Ack
	status int
	delay  time.Duration
}

func newAckServer(t *testing.T) (*ackServer, *egress.Egress) {
	t.Helper()
	s := &ackServer{status: http.StatusOK}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/ack" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		var a wire.Ack
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.got = append(s.got, a)
		status, delay := s.status, s.delay
		s.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				panic(http.ErrAbortHandler) // the client gave up: no answer at all
			}
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"status":"OK"}`)
	}))
	t.Cleanup(s.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	eg, err := egress.New(egress.Config{CAFile: ca}, []string{"127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, eg
}

func TestAckForwardsAndClassifies(t *testing.T) {
	s, eg := newAckServer(t)
	ack := wire.Ack{ID: "ack-1", ReceivedAt: 1_700_000_000_000, Platform: "apple_rn-v2", Type: "message", PostID: "post-1", IsIDLoaded: true}
	closed := httptest.NewTLSServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	tests := []struct {
		name    string
		url     string
		status  int
		delay   time.Duration
		timeout time.Duration
		reason  string // "" = no error
	}{
		{name: "accepted", url: s.URL + "/", status: 200},
		{name: "server error", url: s.URL, status: 502, reason: "ack_http_5xx"},
		{name: "refused", url: s.URL, status: 403, reason: "ack_http_4xx"},
		{name: "too slow", url: s.URL, status: 200, delay: time.Second, timeout: 50 * time.Millisecond, reason: "ack_timeout"},
		{name: "nobody there", url: closedURL, reason: "ack_transport"},
		{name: "outside the allowlist", url: "https://push.example.com", reason: "ack_egress_denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.mu.Lock()
			s.status, s.delay, s.got = tt.status, tt.delay, nil
			s.mu.Unlock()
			p, err := upstream.New(upstream.Config{URL: tt.url}, eg)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			err = p.Ack(ctx, ack)
			ae, isAckErr := errors.AsType[*upstream.AckError](err)
			switch {
			case tt.reason == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tt.reason != "" && (!isAckErr || ae.Reason != tt.reason):
				t.Fatalf("got %v (%+v), want reason %s", err, ae, tt.reason)
			}
			if tt.status != 0 {
				s.mu.Lock()
				got := s.got
				s.mu.Unlock()
				if len(got) != 1 || got[0] != ack {
					t.Errorf("the push proxy got %+v, want %+v", got, ack)
				}
			}
		})
	}
}
