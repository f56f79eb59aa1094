package apns

import (
	"net/http"
	"testing"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/sandbox"
)

// TestEveryDeadTokenReasonIsTokenDead holds each reason WIRE.md names as
// "the token is dead" (BadDeviceToken, Unregistered, MissingDeviceToken,
// DeviceTokenNotForTopic) to TokenDead, the only outcome that makes the
// relay answer REMOVE, with the status Apple sends it with, through a real
// HTTP/2 exchange with the look-alike. Treating any of them as retryable or
// permanent would keep a dead device in Mattermost's session for good.
func TestEveryDeadTokenReasonIsTokenDead(t *testing.T) {
	r := newRig(t)
	p := r.provider(t, r.tokenConfig())
	for i, c := range []struct {
		reason string
		status int
	}{
		{"BadDeviceToken", http.StatusBadRequest},
		{"Unregistered", http.StatusGone},
		{"MissingDeviceToken", http.StatusBadRequest},
		{"DeviceTokenNotForTopic", http.StatusBadRequest},
	} {
		t.Run(c.reason, func(t *testing.T) {
			r.apns.Fail(sandbox.Fault{Status: c.status, Reason: c.reason, Count: 1})
			defer r.apns.Recover()
			token := hexToken(900 + i)
			res := send(t, p, payloadCases()[0].normalized(t, token), sendTimeout)
			if res.Outcome != providers.TokenDead || res.Reason != c.reason {
				t.Errorf("HTTP %d %s: outcome %v reason %q, want TokenDead %q", c.status, c.reason, res.Outcome, res.Reason, c.reason)
			}
			// Whatever the status a gateway puts on it, the reason decides.
			for _, status := range []int{http.StatusBadRequest, http.StatusGone, http.StatusServiceUnavailable} {
				if got := classify(status, c.reason, 0, "api.push.apple.com", token); got.Outcome != providers.TokenDead {
					t.Errorf("classify(%d, %s) = %v, want TokenDead", status, c.reason, got.Outcome)
				}
			}
		})
	}
}
