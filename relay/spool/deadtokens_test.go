package spool

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Two relays share an external JetStream: a dead token one of them
// remembers reaches the other's watch, and a relay that starts later is
// told the keys already there. The bucket keeps keys for max_age.
func TestDeadTokensShared(t *testing.T) {
	url := natsServer(t)
	cfg := Config{NATSURL: url, MaxAge: 42 * time.Minute}
	a, b := openT(t, cfg, fastBackoff), openT(t, cfg, fastBackoff)
	ctx := t.Context()

	seen := func(s *Spool) (func() map[string]time.Time, *DeadTokens) {
		var mu sync.Mutex
		got := map[string]time.Time{}
		d, err := s.DeadTokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Watch(ctx, func(key string, at time.Time) {
			mu.Lock()
			got[key] = at
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
		return func() map[string]time.Time {
			mu.Lock()
			defer mu.Unlock()
			out := map[string]time.Time{}
			for k, v := range got {
				out[k] = v
			}
			return out
		}, d
	}
	seenByA, deadA := seen(a)
	seenByB, _ := seen(b)

	before := time.Now()
	if err := deadA.Remember(ctx, "0011aabb"); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]func() map[string]time.Time{"the relay that found it": seenByA, "the other relay": seenByB} {
		waitFor(t, 5*time.Second, "the key at "+name, func() bool { _, ok := got()["0011aabb"]; return ok })
		if at := got()["0011aabb"]; at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
			t.Errorf("%s: remembered at %s, want about %s", name, at, before)
		}
	}

	// A third relay, started later, is told what is already there.
	c := openT(t, cfg, fastBackoff)
	seenByC, deadC := seen(c)
	waitFor(t, 5*time.Second, "the key at a relay started later", func() bool { _, ok := seenByC()["0011aabb"]; return ok })

	st, err := deadC.kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != cfg.MaxAge {
		t.Errorf("bucket TTL %s, want spool.max_age %s", st.TTL(), cfg.MaxAge)
	}
}

// The embedded spool keeps its bucket across a restart: a relay that
// restarts still remembers the dead tokens it found.
func TestDeadTokensSurviveRestart(t *testing.T) {
	cfg := testConfig(t)
	s := openT(t, cfg, fastBackoff)
	d, err := s.DeadTokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Remember(t.Context(), "cafe01"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = openT(t, cfg, fastBackoff)
	d, err = s.DeadTokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	if err := d.Watch(t.Context(), func(key string, _ time.Time) { got <- key }); err != nil {
		t.Fatal(err)
	}
	select {
	case k := <-got:
		if k != "cafe01" {
			t.Errorf("after a restart the bucket holds %q", k)
		}
	case <-time.After(5 * time.Second):
		t.Error("after a restart the bucket is empty")
	}
	if _, err := s.DeadTokens(t.Context()); err != nil {
		t.Error(err)
	}
	s.Close(context.Background())
	if _, err := s.DeadTokens(t.Context()); err == nil {
		t.Error("DeadTokens after Close did not fail")
	}
}

// A relay started with another spool.max_age brings the bucket's TTL to it,
// and the keys already there stay.
func TestDeadTokensTTLFollowsMaxAge(t *testing.T) {
	url := natsServer(t)
	for i, maxAge := range []time.Duration{time.Hour, 10 * time.Minute, 10 * time.Minute} {
		s := openT(t, Config{NATSURL: url, MaxAge: maxAge}, fastBackoff)
		d, err := s.DeadTokens(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := d.Remember(t.Context(), "k1"); err != nil {
				t.Fatal(err)
			}
		}
		st, err := d.kv.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.TTL() != maxAge || st.Values() != 1 {
			t.Errorf("opened with max_age %s: bucket TTL %s, %d keys; want %s, 1", maxAge, st.TTL(), st.Values(), maxAge)
		}
	}
}
