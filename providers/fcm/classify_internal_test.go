package fcm

import (
	"errors"
	"testing"

	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/relay/wire"
)

func TestScrub(t *testing.T) {
	const token = "fcm-token-abc123"
	inner := errors.New("boom")
	err := scrub(errors.Join(errors.New("refused "+token+" twice: "+token), inner), token)
	want := "refused token:" + wire.TokenHash(token) + " twice: token:" + wire.TokenHash(token) + "\nboom"
	if err.Error() != want {
		t.Errorf("scrub = %q, want %q", err, want)
	}
	if !errors.Is(err, inner) {
		t.Error("a scrubbed error no longer answers errors.Is for what it wrapped")
	}
	if errors.Unwrap(err) != nil {
		t.Error("a scrubbed error unwraps to the text that held the token")
	}
	clean := errors.New("nothing to hide")
	if scrub(clean, token) != clean || scrub(clean, "") != clean {
		t.Error("scrub changed an error without the token")
	}
}

func TestOAuthProblem(t *testing.T) {
	for in, want := range map[string]string{
		`{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`: "invalid_grant: Invalid JWT Signature.",
		`{"error":"unauthorized_client"}`:                                        "unauthorized_client",
		`<html>proxy error</html>`:                                               "no OAuth error in the answer",
	} {
		if got := oauthProblem([]byte(in)); got != want {
			t.Errorf("oauthProblem(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestStatusResult(t *testing.T) {
	e := errors.New("x")
	for _, tc := range []struct {
		status  int
		outcome string
		reason  string
	}{
		{429, "retry", "QUOTA_EXCEEDED"},
		{500, "retry", "INTERNAL"},
		{502, "retry", "other"},
		{503, "retry", "UNAVAILABLE"},
		{504, "retry", "other"},
		{400, "failed", "INVALID_ARGUMENT"},
		{401, "failed", "auth"},
		{403, "failed", "auth"},
		{404, "failed", "other"},
	} {
		r := statusResult(tc.status, 0, e)
		if r.Outcome.String() != tc.outcome || r.Reason != tc.reason {
			t.Errorf("statusResult(%d) = %v %q, want %s %q", tc.status, r.Outcome, r.Reason, tc.outcome, tc.reason)
		}
	}
}

// TestTokenResultDenied: the oauth2 library keeps only the text of an
// egress refusal; the allowlist tells it apart from a network error.
func TestTokenResultDenied(t *testing.T) {
	eg, err := egress.New(egress.Config{}, []string{"fcm.googleapis.com"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &tokenCache{eg: eg, host: "oauth2.googleapis.com", hostname: "oauth2.googleapis.com"}
	r := c.result(errors.New(`oauth2: cannot fetch token: Post "https://oauth2.googleapis.com/token": egress to oauth2.googleapis.com refused`))
	if r.Outcome.String() != "failed" || r.Reason != ReasonEgressDenied || !errors.Is(r.Err, egress.ErrHostNotAllowed) {
		t.Errorf("result = %+v, want failed egress_denied", r)
	}
	c.hostname = "fcm.googleapis.com"
	r = c.result(errors.New(`oauth2: cannot fetch token: Post "https://fcm.googleapis.com/token": dial tcp: lookup fcm.googleapis.com: no such host`))
	if r.Outcome.String() != "retry" || r.Reason != ReasonTransport ||
		r.Err.Error() != "fcm: fetching an OAuth token from oauth2.googleapis.com: dial tcp: lookup fcm.googleapis.com: no such host" {
		t.Errorf("result = %+v, want a retryable transport error", r)
	}
}
