package relay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

// A transient failure (a 503, a stream reset) gets a quick second attempt
// within delivery.timeout, marked as a redelivery, so that Mattermost gets
// the provider's verdict: REMOVE for a dead token, OK for a delivered one,
// without a trip through the spool. A throttle (429) does not: it waits in
// the spool.
func TestQuickSecondAttempt(t *testing.T) {
	cases := []struct {
		name       string
		platform   string
		fault      sandbox.Fault
		dead       bool
		wantStatus string
		quick      bool // a quick second attempt is made
	}{
		{"APNs 503, dead token", "apple_rn", sandbox.Fault{Status: 503, Count: 1}, true, "REMOVE", true},
		{"APNs 503, live token", "apple_rn", sandbox.Fault{Status: 503, Count: 1}, false, "OK", true},
		{"APNs stream reset, dead token", "apple_rn", sandbox.Fault{Reset: true, Count: 1}, true, "REMOVE", true},
		{"FCM 503, dead token", "android_rn", sandbox.Fault{Status: 503, Count: 1}, true, "REMOVE", true},
		{"FCM 500, live token", "android_rn", sandbox.Fault{Status: 500, Count: 1}, false, "OK", true},
		{"APNs 429, dead token: no second attempt", "apple_rn", sandbox.Fault{Status: 429, Count: 1}, true, "OK", false},
		{"FCM 429 QUOTA_EXCEEDED, dead token: no second attempt", "android_rn", sandbox.Fault{Status: 429, Count: 1}, true, "OK", false},
		{"APNs 503 twice, dead token: spooled", "apple_rn", sandbox.Fault{Status: 503, Count: 2}, true, "OK", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, "{}")
			const token = "tok-q"
			if c.platform == "apple_rn" {
				h.apple.Fail(c.fault)
				if c.dead {
					h.apple.KillToken(token, "Unregistered")
				}
			} else {
				h.google.Fail(c.fault)
				if c.dead {
					h.google.KillToken(token, "UNREGISTERED")
				}
			}
			m := mmMessage(c.platform, token)
			m.AckId = "ack-q"
			code, answer := h.push(m)
			if code != 200 || answer["status"] != c.wantStatus {
				t.Fatalf("HTTP %d %v, want %s", code, answer, c.wantStatus)
			}
			provider := map[string]string{"apple_rn": "apns", "android_rn": "fcm"}[c.platform]
			if quick := metric(t, h, `pushrelay_provider_quick_retries_total{provider="`+provider+`"} 1`); quick != c.quick {
				t.Errorf("quick second attempt made: %v, want %v", quick, c.quick)
			}
			// The first attempt carries no collapse id; any later one does.
			var collapse []string
			if c.platform == "apple_rn" {
				for _, r := range h.apple.Requests() {
					collapse = append(collapse, r.Header.Get("apns-collapse-id"))
				}
			} else {
				for _, r := range h.google.Requests() {
					collapse = append(collapse, map[bool]string{true: "ack-q"}[strings.Contains(string(r.Body), `"collapse_key":"ack-q"`)])
				}
			}
			for i, got := range collapse {
				if want := map[bool]string{true: "ack-q"}[i > 0]; got != want {
					t.Errorf("attempt %d: collapse id %q, want %q", i+1, got, want)
				}
			}
		})
	}
}

// A dead token whose first attempts meet 503s is spooled (Mattermost is
// answered OK); the redelivery finds it dead, and the next push to that
// device is answered REMOVE at once, without calling the provider, and
// counted as removed. Other devices are not affected.
func TestDeadTokenFoundOnRedeliveryIsAnsweredRemoveNextTime(t *testing.T) {
	for _, platform := range []string{"apple_rn", "android_rn"} {
		t.Run(platform, func(t *testing.T) {
			h := start(t, "{}")
			const token = "tok-dead"
			requests := func() int { return len(h.apple.Requests()) + len(h.google.Requests()) }
			if platform == "apple_rn" {
				h.apple.KillToken(token, "Unregistered")
				h.apple.Fail(sandbox.Fault{Status: 503, Count: 2}) // the first attempt and the quick second one
			} else {
				h.google.KillToken(token, "UNREGISTERED")
				h.google.Fail(sandbox.Fault{Status: 503, Count: 2})
			}
			m := mmMessage(platform, token)
			m.AckId = "ack-1"
			if code, answer := h.push(m); code != 200 || answer["status"] != "OK" {
				t.Fatalf("first push: HTTP %d %v, want OK (spooled)", code, answer)
			}
			waitFor(t, "the redelivery to find the token dead", 10*time.Second, func() bool {
				return metric(t, h, `pushrelay_dead_tokens_remembered 1`)
			})
			before := requests()
			m.AckId = "ack-2"
			if code, answer := h.push(m); code != 200 || answer["status"] != "REMOVE" {
				t.Fatalf("next push to the dead token: HTTP %d %v, want REMOVE", code, answer)
			}
			if n := requests() - before; n != 0 {
				t.Errorf("the remembered dead token cost %d provider requests", n)
			}
			provider := map[string]string{"apple_rn": "apns", "android_rn": "fcm"}[platform]
			if !metric(t, h, `pushrelay_notifications_total{app="`+platform+`",outcome="removed",provider="`+provider+`",type="message"} 2`) {
				t.Error("the redelivery's removal and the remembered one are not both counted removed")
			}
			if strings.Contains(h.logs.String(), token) {
				t.Error("a log line holds the device token")
			}
			if !strings.Contains(h.logs.String(), `"reason":"remembered_dead"`) {
				t.Error("the remembered REMOVE is not logged with reason remembered_dead")
			}
			// The same token of another app, and another token, still go out.
			other := mmMessage(platform, "tok-live")
			if code, answer := h.push(other); code != 200 || answer["status"] != "OK" || requests() != before+1 {
				t.Errorf("a live token: HTTP %d %v, %d requests", code, answer, requests()-before)
			}
		})
	}
}
