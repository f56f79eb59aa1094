package spool

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 30 * time.Second}
	tests := []struct {
		attempt int
		base    time.Duration
	}{
		{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{5, 16 * time.Second}, {6, 30 * time.Second}, {100, 30 * time.Second}, {1 << 30, 30 * time.Second},
	}
	for _, tc := range tests {
		for range 50 {
			d := b.Delay(tc.attempt)
			lo, hi := time.Duration(float64(tc.base)*0.8), min(time.Duration(float64(tc.base)*1.2), b.Max)
			if d < lo || d > hi {
				t.Fatalf("Delay(%d) = %s, want %s ±20%%", tc.attempt, d, tc.base)
			}
		}
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Dir: "x"}.WithDefaults()
	if c.MaxAge != time.Hour || c.MaxMessages != 1_000_000 || c.MaxBytes != 1<<30 {
		t.Errorf("Config defaults: %+v", c)
	}
	if c.duplicates(dedupWindow) > c.streamMaxAge() || c.streamMaxAge() <= c.MaxAge {
		t.Errorf("windows: duplicates %s, stream max age %s, max_age %s", c.duplicates(dedupWindow), c.streamMaxAge(), c.MaxAge)
	}
	b := Backoff{}.WithDefaults()
	if b.Initial != time.Second || b.Max != 5*time.Minute {
		t.Errorf("Backoff defaults: %+v", b)
	}
	if b := (Backoff{Initial: time.Minute, Max: time.Second}).WithDefaults(); b.Max != time.Minute {
		t.Errorf("Max below Initial: %+v", b)
	}
}

func TestNames(t *testing.T) {
	for _, app := range []string{"apple_rn", "*", "a.b c>", "ünï"} {
		sub, cons := subject(app), consumerName(app)
		if sub == SubjectPrefix || len(sub) <= len(SubjectPrefix) {
			t.Errorf("subject(%q) = %q", app, sub)
		}
		for _, c := range []byte(sub[len(SubjectPrefix):] + cons) {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == '_' || c >= 'g' && c <= 'z') {
				t.Errorf("%q: unsafe character %q in %q / %q", app, c, sub, cons)
			}
		}
	}
	long := string(make([]byte, 300))
	if n := consumerName(long); len(n) > 100 {
		t.Errorf("consumer name for a long app is %d long", len(n))
	}
}
