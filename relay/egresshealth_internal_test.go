package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
)

// TestEgressHealthLogsOncePerWindow: an app's misconfigured egress is
// logged at error level once per egressLogEvery and reason, the next line
// saying how many were not; every one is counted by app and reason; a
// transient failure changes nothing; an answer from the provider clears
// /readyz's problem.
func TestEgressHealthLogsOncePerWindow(t *testing.T) {
	var logs bytes.Buffer
	a := &app{name: "apple_rn", provider: "apns"}
	r := &Relay{metrics: newMetrics("test", false), log: slog.New(slog.NewJSONHandler(&logs, nil))}
	r.state.Store(&state{apps: map[string]*app{a.name: a}})

	misconfigured := func(reason string) providers.Result {
		me := &egress.MisconfigError{Reason: reason, What: "proxy http://proxy:3128 refused CONNECT to api.push.apple.com:443 with 407",
			Fix: "check egress.proxy credentials", Err: errors.New("407 Proxy Authentication Required")}
		return providers.Permanent(reason, fmt.Errorf("apns: %w", me))
	}
	lines := func() []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) == nil {
				out = append(out, rec)
			}
		}
		return out
	}
	count := func(reason string) float64 {
		mfs, err := r.metrics.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "pushrelay_egress_errors_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["app"] == a.name && labels["reason"] == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}

	for range 5 {
		r.observeEgress(a, misconfigured(egress.ReasonProxyAuth))
	}
	if got := lines(); len(got) != 1 || got[0]["level"] != "ERROR" || got[0]["suppressed"] != 0.0 || got[0]["reason"] != "proxy_auth" ||
		got[0]["error"] != "egress misconfigured: proxy http://proxy:3128 refused CONNECT to api.push.apple.com:443 with 407: check egress.proxy credentials" {
		t.Fatalf("after 5 in one window: %v", got)
	}
	if count(egress.ReasonProxyAuth) != 5 {
		t.Errorf("counted %v, want 5", count(egress.ReasonProxyAuth))
	}
	want := []string{"app apple_rn: egress misconfigured: proxy http://proxy:3128 refused CONNECT to api.push.apple.com:443 with 407: check egress.proxy credentials"}
	if got := r.egressProblems(); len(got) != 1 || got[0] != want[0] {
		t.Errorf("problems %q, want %q", got, want)
	}

	// The window ends: the next one is logged, with the 4 left out.
	a.egress.logs[egress.ReasonProxyAuth].last = time.Now().Add(-egressLogEvery - time.Second)
	r.observeEgress(a, misconfigured(egress.ReasonProxyAuth))
	if got := lines(); len(got) != 2 || got[1]["suppressed"] != 4.0 {
		t.Fatalf("after the window: %v", got)
	}
	// Another reason has its own window.
	r.observeEgress(a, misconfigured(egress.ReasonTLSName))
	if got := lines(); len(got) != 3 || got[2]["reason"] != "tls_name" {
		t.Fatalf("another reason: %v", got)
	}
	// The allowlist's refusal: providers say egress_denied; the label is
	// the egress's own.
	r.observeEgress(a, providers.Permanent("egress_denied", fmt.Errorf("apns: %w", &egress.MisconfigError{
		Reason: egress.ReasonHostNotAllowed, What: "egress to x refused", Fix: "add x", Err: egress.ErrHostNotAllowed})))
	if count(egress.ReasonHostNotAllowed) != 1 {
		t.Errorf("host_not_allowed counted %v, want 1", count(egress.ReasonHostNotAllowed))
	}

	// A proxy that is down is not a misconfiguration: nothing changes.
	r.observeEgress(a, providers.Retryable("transport", 0, errors.New("apns: connection refused")))
	if len(r.egressProblems()) != 1 || len(lines()) != 4 {
		t.Errorf("a transient failure changed the state: %q, %d lines", r.egressProblems(), len(lines()))
	}
	// An answer from the provider: ready again, said once.
	r.observeEgress(a, providers.Dead("Unregistered"))
	r.observeEgress(a, providers.Delivery())
	if got := r.egressProblems(); len(got) != 0 {
		t.Errorf("problems after an answer: %q", got)
	}
	if got := lines(); len(got) != 5 || got[4]["msg"] != "egress works again" {
		t.Errorf("after the answer: %v", got)
	}
}

// BenchmarkObserveEgressDelivered is what every delivered send pays for
// egress health: one atomic load.
func BenchmarkObserveEgressDelivered(b *testing.B) {
	a := &app{name: "apple_rn", provider: "apns"}
	r := &Relay{metrics: newMetrics("test", false), log: slog.New(slog.DiscardHandler)}
	res := providers.Delivery()
	for b.Loop() {
		r.observeEgress(a, res)
	}
}

// TestEgressProbeInterval: a misconfiguration is probed every
// egressProbeEvery; a login the proxy refused (each probe is a login)
// less and less often, up to proxyAuthProbeMax, so that a wrong password
// does not lock the proxy's account.
func TestEgressProbeInterval(t *testing.T) {
	tests := []struct {
		proxyAuth bool
		fails     int
		want      time.Duration
	}{
		{false, 0, 10 * time.Second},
		{false, 7, 10 * time.Second},
		{true, 0, 10 * time.Second},
		{true, 1, 20 * time.Second},
		{true, 3, 80 * time.Second},
		{true, 5, 5 * time.Minute}, // 320 s, capped
		{true, 60, 5 * time.Minute},
	}
	for _, tc := range tests {
		h := &egressHealth{proxyAuth: tc.proxyAuth, probeFails: tc.fails}
		if got := h.probeInterval(); got != tc.want {
			t.Errorf("proxy_auth %t after %d failed probes: %s, want %s", tc.proxyAuth, tc.fails, got, tc.want)
		}
	}
}
