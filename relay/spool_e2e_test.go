package relay_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// deliveredAcks counts, per ack_id, the requests a look-alike answered 200.
func deliveredAcks(t *testing.T, bodies [][]byte) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, b := range bodies {
		var m map[string]any
		json.Unmarshal(b, &m)
		if msg, ok := m["message"].(map[string]any); ok { // FCM
			m = msg["data"].(map[string]any)
		}
		out[fmt.Sprint(m["ack_id"])]++
	}
	return out
}

func okAPNs(h *harness) [][]byte {
	var out [][]byte
	for _, r := range h.apple.Requests() {
		if r.Status == 200 {
			out = append(out, r.Body)
		}
	}
	return out
}

func okFCM(h *harness) [][]byte {
	var out [][]byte
	for _, r := range h.google.Requests() {
		if r.Status == 200 {
			out = append(out, r.Body)
		}
	}
	return out
}

func metric(t *testing.T, h *harness, line string) bool {
	t.Helper()
	resp, err := http.Get("http://" + h.srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), line)
}

func pushN(t *testing.T, h *harness, platform string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		m := mmMessage(platform, fmt.Sprintf("tok-%d", i))
		m.AckId = fmt.Sprintf("ack-%d", i)
		start := time.Now()
		code, answer := h.push(m)
		if code != 200 || answer["status"] != "OK" {
			t.Fatalf("push %d: HTTP %d %v", i, code, answer)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("push %d kept Mattermost waiting %s", i, took)
		}
	}
}

func TestOutagesAreRiddenOutExactlyOnce(t *testing.T) {
	tests := []struct {
		name     string
		platform string
		fail     func(h *harness)
	}{
		{"APNs 503 burst", "apple_rn", func(h *harness) { h.apple.Fail(sandbox.Fault{Status: 503}) }},
		{"APNs 429 with Retry-After", "apple_rn", func(h *harness) { h.apple.Fail(sandbox.Fault{Status: 429, RetryAfter: time.Second}) }},
		{"APNs timeouts", "apple_rn", func(h *harness) { h.apple.Fail(sandbox.Fault{Delay: 3 * time.Second}) }},
		{"APNs connection resets", "apple_rn", func(h *harness) { h.apple.Fail(sandbox.Fault{Reset: true}) }},
		{"FCM 503 burst", "android_rn", func(h *harness) { h.google.Fail(sandbox.Fault{Status: 503}) }},
		{"FCM 500", "android_rn", func(h *harness) { h.google.Fail(sandbox.Fault{Status: 500}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, "{}")
			tt.fail(h)
			const n = 8
			pushN(t, h, tt.platform, n)
			if !metric(t, h, `outcome="spooled"`) {
				t.Error("no spooled outcome counted")
			}
			h.apple.Recover()
			h.google.Recover()
			ok := func() [][]byte { return okAPNs(h) }
			if tt.platform == "android_rn" {
				ok = func() [][]byte { return okFCM(h) }
			}
			waitFor(t, "every notification delivered", 15*time.Second, func() bool { return len(deliveredAcks(t, ok())) == n })
			time.Sleep(300 * time.Millisecond) // room for a duplicate to show
			for ack, times := range deliveredAcks(t, ok()) {
				if times != 1 {
					t.Errorf("%s delivered %d times", ack, times)
				}
			}
			if !metric(t, h, "pushrelay_spool_redeliveries_total") {
				t.Error("no redelivery counted")
			}
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	h := start(t, "{}")
	h.apple.Fail(sandbox.Fault{Status: 429, RetryAfter: 2 * time.Second, Count: 1})
	pushed := time.Now()
	pushN(t, h, "apple_rn", 1)
	waitFor(t, "delivery", 10*time.Second, func() bool { return len(okAPNs(h)) == 1 })
	if waited := time.Since(pushed); waited < 1900*time.Millisecond {
		t.Errorf("redelivered after %s, before Retry-After (2s)", waited)
	}
}

func TestRedeliveryCarriesCollapseIDAndExpiration(t *testing.T) {
	h := start(t, "{}")
	h.apple.Fail(sandbox.Fault{Status: 503, Count: 1})
	pushN(t, h, "apple_rn", 1)
	waitFor(t, "delivery", 10*time.Second, func() bool { return len(okAPNs(h)) == 1 })
	reqs := h.apple.Requests()
	first, last := reqs[0], reqs[len(reqs)-1]
	if first.Header.Get("apns-collapse-id") != "ack-0" || last.Header.Get("apns-collapse-id") != "ack-0" {
		t.Errorf("collapse id: first %q, redelivery %q", first.Header.Get("apns-collapse-id"), last.Header.Get("apns-collapse-id"))
	}
	exp := first.Header.Get("apns-expiration")
	var unix int64
	fmt.Sscan(exp, &unix)
	if d := time.Until(time.Unix(unix, 0)); d < 50*time.Minute || d > time.Hour {
		t.Errorf("apns-expiration %q is %s away, want about spool.max_age (1h)", exp, d)
	}
}

func TestDeadTokenOnRedeliveryIsCountedRemoved(t *testing.T) {
	h := start(t, "{}")
	h.apple.Fail(sandbox.Fault{Status: 503, Count: 3}) // the first attempt and the two quick ones
	pushN(t, h, "apple_rn", 1)
	h.apple.KillToken("tok-0", "Unregistered")
	waitFor(t, "the removal", 10*time.Second, func() bool {
		return metric(t, h, `pushrelay_notifications_total{app="apple_rn",outcome="removed",provider="apns",type="message"} 1`)
	})
}

func TestFailingProviderIsNotHitByEveryPush(t *testing.T) {
	h := start(t, "{}")
	h.apple.Fail(sandbox.Fault{Delay: 3 * time.Second}) // every attempt times out (delivery.timeout 1s)
	var slow int
	for i := 0; i < 20; i++ {
		m := mmMessage("apple_rn", fmt.Sprintf("tok-%d", i))
		m.AckId = fmt.Sprintf("ack-%d", i)
		start := time.Now()
		if code, answer := h.push(m); code != 200 || answer["status"] != "OK" {
			t.Fatalf("push %d: HTTP %d %v", i, code, answer)
		}
		if time.Since(start) > 500*time.Millisecond {
			slow++ // waited on the provider's 1s timeout
		}
	}
	// After a few timeouts the breaker opens: the rest go straight to the
	// spool, but for a probe every 2s.
	if slow > 8 {
		t.Errorf("%d of 20 pushes waited on the failing provider", slow)
	}
}

func TestExpiredNotificationsAreDroppedNotDeliveredLate(t *testing.T) {
	h := start(t, "{}", "spool: {max_age: 1s}")
	h.apple.Fail(sandbox.Fault{Status: 503})
	pushN(t, h, "apple_rn", 2)
	waitFor(t, "expiry", 10*time.Second, func() bool {
		return metric(t, h, `pushrelay_notifications_total{app="apple_rn",outcome="expired",provider="apns",type="message"} 2`)
	})
	h.apple.Recover()
	time.Sleep(500 * time.Millisecond)
	if n := len(okAPNs(h)); n != 0 {
		t.Errorf("%d expired notifications were delivered", n)
	}
}

func TestFullSpoolAnswersFail(t *testing.T) {
	h := start(t, "{}", "spool: {max_messages: 2}")
	h.apple.Fail(sandbox.Fault{Status: 503})
	pushN(t, h, "apple_rn", 2)
	m := mmMessage("apple_rn", "tok-x")
	m.AckId = "ack-x"
	code, answer := h.push(m)
	if code != 200 || answer["status"] != "FAIL" || !strings.Contains(answer["error"], "spool.max_messages") {
		t.Errorf("full spool: HTTP %d %v", code, answer)
	}
	if !metric(t, h, "pushrelay_spool_messages 2") || metric(t, h, "pushrelay_spool_oldest_age_seconds 0\n") {
		t.Error("the spool gauges do not show the two kept notifications")
	}
}
