package relay

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestDeadTokensExpire(t *testing.T) {
	d := newDeadTokens(time.Hour, 10)
	t0 := time.Unix(1_000_000, 0)
	k := deadKeyOf("apple_rn", "tok-1")
	if !d.empty() || d.has(k, t0) {
		t.Fatal("a new set is not empty")
	}
	if !d.add(k, t0, t0) {
		t.Fatal("add of a new key reported it known")
	}
	if d.empty() || !d.has(k, t0.Add(59*time.Minute)) {
		t.Error("a key is not remembered within its ttl")
	}
	if d.has(deadKeyOf("apple_rnbeta", "tok-1"), t0) || d.has(deadKeyOf("apple_rn", "tok-2"), t0) {
		t.Error("a key of another app or token is taken for it")
	}
	if d.has(k, t0.Add(time.Hour)) {
		t.Error("a key is remembered past its ttl")
	}
	// Found dead by another relay 2h ago: already expired, ignored.
	if d.add(deadKeyOf("apple_rn", "tok-old"), t0.Add(-2*time.Hour), t0) || d.len() != 1 {
		t.Errorf("an add older than the ttl was kept (len %d)", d.len())
	}
	// The sweep drops what expired, and the set is empty again: the hot
	// path is back to one atomic load.
	d.sweep(t0.Add(61 * time.Minute))
	if !d.empty() {
		t.Errorf("after the sweep %d keys are left", d.len())
	}
}

func TestDeadTokensRenewal(t *testing.T) {
	d := newDeadTokens(time.Hour, 10)
	t0 := time.Unix(1_000_000, 0)
	k := deadKeyOf("android_rn", "tok")
	d.add(k, t0, t0)
	if d.add(k, t0.Add(30*time.Minute), t0.Add(30*time.Minute)) {
		t.Error("a renewed key was reported new")
	}
	d.sweep(t0.Add(61 * time.Minute)) // the first add's queue entry expires, not the key
	if !d.has(k, t0.Add(61*time.Minute)) || d.len() != 1 {
		t.Errorf("a renewed key was dropped at its first expiry (len %d)", d.len())
	}
	d.sweep(t0.Add(91 * time.Minute))
	if !d.empty() {
		t.Error("a renewed key outlived its second expiry")
	}
}

func TestDeadTokensBound(t *testing.T) {
	const max = 100
	d := newDeadTokens(time.Hour, max)
	t0 := time.Unix(1_000_000, 0)
	for i := range 3 * max {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		d.add(deadKeyOf("a", fmt.Sprint(i)), now, now)
		if d.len() > max {
			t.Fatalf("after %d adds, %d keys are kept, more than %d", i+1, d.len(), max)
		}
	}
	now := t0.Add(time.Second)
	// The newest are kept, the oldest dropped.
	for i := range 3 * max {
		if got, want := d.has(deadKeyOf("a", fmt.Sprint(i)), now), i >= 2*max; got != want {
			t.Fatalf("key %d remembered %v, want %v", i, got, want)
		}
	}
	if len(d.order)-d.head != max {
		t.Errorf("the queue holds %d entries for %d keys", len(d.order)-d.head, max)
	}
}

// TestDeadTokensConcurrent: lookups while keys are added (run with -race).
func TestDeadTokensConcurrent(t *testing.T) {
	d := newDeadTokens(time.Hour, 1000)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 500 {
				now := time.Now()
				d.add(deadKeyOf("a", fmt.Sprint(w, i)), now, now)
			}
		}()
		go func() {
			defer wg.Done()
			for i := range 2000 {
				now := time.Now()
				d.maybeSweep(now)
				_ = d.has(deadKeyOf("a", fmt.Sprint(w, i%500)), now)
			}
		}()
	}
	wg.Wait()
	if d.len() != 1000 {
		t.Errorf("%d keys kept, want the bound, 1000", d.len())
	}
}

func TestDeadKeyRoundTrip(t *testing.T) {
	k := deadKeyOf("apple_rn", "0123456789abcdef")
	s := k.String()
	if got, ok := parseDeadKey(s); !ok || got != k {
		t.Errorf("parseDeadKey(%q) = %v, %v", s, got, ok)
	}
	for _, bad := range []string{"", "xyz", s[:30], s + "00", "zz" + s[2:]} {
		if _, ok := parseDeadKey(bad); ok {
			t.Errorf("parseDeadKey(%q) accepted", bad)
		}
	}
}

// BenchmarkDeadTokensLookup is what the hot path pays per push once the
// set is not empty: a hash of app and token and a map read.
func BenchmarkDeadTokensLookup(b *testing.B) {
	d := newDeadTokens(time.Hour, maxDeadTokens)
	now := time.Now()
	for i := range 1000 {
		d.add(deadKeyOf("apple_rn", fmt.Sprint("dead-", i)), now, now)
	}
	token := "a7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.maybeSweep(now)
			if d.has(deadKeyOf("apple_rn", token), now) {
				b.Fatal("a live token is taken for dead")
			}
		}
	})
}
