package providers_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 2 * time.Minute},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second},
	} {
		if got := providers.ParseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("providers.ParseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
