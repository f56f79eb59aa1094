package relay

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers"
)

func TestQuickRetryRule(t *testing.T) {
	e := errors.New("x")
	cases := []struct {
		name string
		res  providers.Result
		left time.Duration // of a 1s deadline
		want bool
	}{
		{"APNs 503", providers.Retryable("ServiceUnavailable", 0, e), 900 * time.Millisecond, true},
		{"FCM 500", providers.Retryable("INTERNAL", 0, e), 900 * time.Millisecond, true},
		{"stream reset", providers.Retryable("transport", 0, e), 900 * time.Millisecond, true},
		{"503, but little time left", providers.Retryable("ServiceUnavailable", 0, e), 200 * time.Millisecond, false},
		{"503 with Retry-After", providers.Retryable("ServiceUnavailable", time.Second, e), 900 * time.Millisecond, false},
		{"a throttle", providers.Throttled("QUOTA_EXCEEDED", 0, e), 900 * time.Millisecond, false},
		{"APNs 429 (by its reason)", providers.Retryable("TooManyRequests", 0, e), 900 * time.Millisecond, false},
		{"upstream 429 (by its reason)", providers.Retryable("http_4xx", 0, e), 900 * time.Millisecond, false},
		{"a timeout", providers.Retryable("timeout", 0, e), 900 * time.Millisecond, false},
		{"delivered", providers.Delivery(), 900 * time.Millisecond, false},
		{"dead", providers.Dead("Unregistered"), 900 * time.Millisecond, false},
		{"permanent", providers.Permanent("BadTopic", e), 900 * time.Millisecond, false},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), c.left)
		if got := quickRetry(ctx, c.res, time.Second); got != c.want {
			t.Errorf("%s: quickRetry = %v, want %v", c.name, got, c.want)
		}
		cancel()
	}
	if quickRetry(context.Background(), providers.Retryable("ServiceUnavailable", 0, e), time.Second) {
		t.Error("quickRetry without a deadline")
	}
}
