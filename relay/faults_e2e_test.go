package relay_test

import (
	"fmt"
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
		retries    int // quick attempts after the first
	}{
		{"APNs 503, dead token", "apple_rn", sandbox.Fault{Status: 503, Count: 1}, true, "REMOVE", 1},
		{"APNs 503, live token", "apple_rn", sandbox.Fault{Status: 503, Count: 1}, false, "OK", 1},
		{"APNs stream reset, dead token", "apple_rn", sandbox.Fault{Reset: true, Count: 1}, true, "REMOVE", 1},
		{"FCM 503, dead token", "android_rn", sandbox.Fault{Status: 503, Count: 1}, true, "REMOVE", 1},
		{"FCM 500, live token", "android_rn", sandbox.Fault{Status: 500, Count: 1}, false, "OK", 1},
		{"APNs 429, dead token: no second attempt", "apple_rn", sandbox.Fault{Status: 429, Count: 1}, true, "OK", 0},
		{"FCM 429 QUOTA_EXCEEDED, dead token: no second attempt", "android_rn", sandbox.Fault{Status: 429, Count: 1}, true, "OK", 0},
		{"APNs 503 twice, dead token: a third attempt", "apple_rn", sandbox.Fault{Status: 503, Count: 2}, true, "REMOVE", 2},
		{"FCM 503 three times, dead token: spooled", "android_rn", sandbox.Fault{Status: 503, Count: 3}, true, "OK", 2},
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
			want := fmt.Sprintf(`pushrelay_provider_quick_retries_total{provider=%q} %d`, provider, c.retries)
			if c.retries == 0 {
				want = `pushrelay_provider_quick_retries_total{provider="` + provider + `"}`
			}
			if got := metric(t, h, want); got == (c.retries == 0) {
				t.Errorf("quick attempts after the first: want %d", c.retries)
			}
			// Every APNs attempt carries the collapse id (the first may
			// reach the phone though its answer is lost); FCM's only
			// after the first, as FCM keeps just four collapse keys per
			// offline device.
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
				if want := map[bool]string{true: "ack-q"}[i > 0 || c.platform == "apple_rn"]; got != want {
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
				h.apple.Fail(sandbox.Fault{Status: 503, Count: 3}) // the first attempt and the two quick ones
			} else {
				h.google.KillToken(token, "UNREGISTERED")
				h.google.Fail(sandbox.Fault{Status: 503, Count: 3})
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

// A provider that fails everything gets at most about twice its load from
// the quick attempts: the third attempt is only for isolated failures.
func TestQuickAttemptsDoNotPileOnAFailingProvider(t *testing.T) {
	h := start(t, "{}")
	h.apple.Fail(sandbox.Fault{Status: 503})
	const n = 20
	pushN(t, h, "apple_rn", n)
	// The redeliveries from the spool are not counted: the quick attempts are.
	for k := 0; k <= 3*n; k++ {
		if metric(t, h, fmt.Sprintf(`pushrelay_provider_quick_retries_total{provider="apns"} %d`+"\n", k)) {
			if k > n+2 {
				t.Errorf("%d pushes to a provider that fails them all made %d quick attempts more, more than one each", n, k)
			}
			return
		}
	}
	t.Error("no quick attempts counted")
}
