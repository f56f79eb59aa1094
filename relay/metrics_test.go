package relay_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

// exercise makes a relay count something in every series it has.
func exercise(t *testing.T, h *harness) {
	t.Helper()
	h.apple.KillToken("gone", "Unregistered")
	for _, tok := range []string{"good", "gone"} {
		m := mmMessage("apple_rn", tok)
		m.AckId = "ack-" + tok
		h.push(m)
	}
	h.push(mmMessage("android_rn", "good"))
	voip := mmMessage("apple_rn", "voip-tok")
	voip.SubType = "calls"
	body, _ := json.Marshal(voip)
	body = bytes.Replace(body, []byte(`"platform"`), []byte(`"transport":"voip","platform"`), 1)
	h.raw(http.MethodPost, "/api/v1/send_push", body)
	h.apple.Fail(sandbox.Fault{Status: 400, Reason: "TopicDisallowed", Count: 1})
	h.push(mmMessage("apple_rn", "good"))
	h.apple.Recover()
	h.push(mmMessage("windows_phone", "x"))
	h.raw(http.MethodPost, "/api/v1/send_push", []byte("{"))
	h.ack("ack-good", "apple_rn", time.Now().UnixMilli())
}

func TestMetricsPassPromlint(t *testing.T) {
	t.Setenv("PUSHRELAY_METRICS_LEGACY_NAMES", "true")
	h := start(t, "{}")
	exercise(t, h)
	metrics := h.scrape()
	if !strings.Contains(metrics, "service_success_total") || !strings.Contains(metrics, "pushrelay_acks_total") {
		t.Fatalf("the scrape lacks the series under test:\n%s", metrics)
	}
	problems, err := promlint.New(strings.NewReader(metrics)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestMetricsSpeakOpenMetrics(t *testing.T) {
	h := start(t, "{}")
	h.push(mmMessage("apple_rn", "good"))
	req, err := http.NewRequest(http.MethodGet, "http://"+h.srv.MetricsAddr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("Content-Type %q, want OpenMetrics", ct)
	}
	if !bytes.HasSuffix(body, []byte("# EOF\n")) {
		t.Errorf("an OpenMetrics exposition ends with # EOF:\n%s", body)
	}
	for _, want := range []string{"# TYPE pushrelay_notifications counter", `pushrelay_notifications_total{app="apple_rn",outcome="delivered",provider="apns",type="message"} 1.0`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("the OpenMetrics exposition lacks %s", want)
		}
	}
}

func TestLegacyMetricNames(t *testing.T) {
	tests := []struct {
		name   string
		legacy string
		want   []string
		absent []string
	}{
		{name: "off by default", absent: []string{"service_"}},
		{name: "on", legacy: "true", want: []string{
			`service_notifications_total{platform="apple",transport="",type="message"} 3`,
			`service_notifications_total{platform="apple",transport="voip",type="message"} 1`,
			`service_notifications_total{platform="android",transport="",type="message"} 1`,
			`service_success_total{platform="apple",type="message"} 2`,
			`service_success_total{platform="android",type="message"} 1`,
			`service_removal_total{platform="apple",reason="Unregistered",transport=""} 1`,
			`service_failure_total{platform="apple",type="message"} 2`,
			`service_failure_with_reason_total{platform="apple",reason="Unregistered",type="message"} 1`,
			`service_failure_with_reason_total{platform="apple",reason="TopicDisallowed",type="message"} 1`,
			`service_bad_request_total 2`,
			`service_apns_request_duration_seconds_count 4`,
			`service_fcm_request_duration_seconds_count 1`,
			`service_notification_duration_seconds_count{platform="apple"} 4`,
			`service_notification_duration_seconds_count{platform="android"} 1`,
			`service_request_duration_seconds_count 8`,
		}, absent: []string{`platform="apple_rn"`, `platform="windows_phone"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.legacy != "" {
				t.Setenv("PUSHRELAY_METRICS_LEGACY_NAMES", tt.legacy)
			}
			h := start(t, "{}")
			exercise(t, h)
			metrics := h.scrape()
			for _, want := range tt.want {
				if !strings.Contains(metrics, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
			for _, no := range tt.absent {
				if strings.Contains(metrics, no) {
					t.Errorf("metrics hold %s", no)
				}
			}
		})
	}
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, tt := range []struct {
		name  string
		extra []string
		want  int
	}{
		{"default", nil, http.StatusNotFound},
		{"metrics.pprof", []string{"metrics: {pprof: true}"}, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, "{}", tt.extra...)
			resp, err := http.Get("http://" + h.srv.MetricsAddr() + "/debug/pprof/heap?debug=1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET /debug/pprof/heap: HTTP %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}
