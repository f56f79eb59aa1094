package spool

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// outage is a deliver callback that answers "retry later" while down is
// set and Done otherwise, and counts what it was asked.
type outage struct {
	down       atomic.Bool
	retryAfter time.Duration
	attempts   atomic.Int64
	mu         sync.Mutex
	delivered  map[string]int // device -> deliveries that succeeded
	order      []string       // devices, in the order they were delivered
}

func newOutage() *outage { o := &outage{delivered: map[string]int{}}; o.down.Store(true); return o }

func (o *outage) deliver(_ context.Context, e Entry, _ int) Verdict {
	o.attempts.Add(1)
	if o.down.Load() {
		return Verdict{RetryAfter: o.retryAfter}
	}
	o.mu.Lock()
	o.delivered[e.Notification.DeviceID]++
	o.order = append(o.order, e.Notification.DeviceID)
	o.mu.Unlock()
	return Verdict{Done: true}
}

// ackPending is how many of app's entries JetStream holds as handed out
// and not acked: what it keeps in memory per entry.
func ackPending(t testing.TB, s *Spool, app string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.js.Consumer(ctx, StreamName, consumerName(app))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.NumAckPending
}

// fillApp spools n entries for app, due after notBefore, from 16 callers.
func fillApp(t testing.TB, s *Spool, app string, from, n int, notBefore time.Duration, ack bool) {
	t.Helper()
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(from+n) {
					return
				}
				ackID := ""
				if ack {
					ackID = fmt.Sprint("ack", i)
				}
				if err := s.Put(context.Background(), entry(app, ackID, fmt.Sprintf("dev%07d", i)), notBefore); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// While every delivery fails, the spool tries a few entries, not all of
// them over and over, and JetStream holds only those few as pending; when
// the provider answers again, every entry is delivered once, oldest first.
func TestOutageProbesThenDrains(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxAge = time.Hour
	s := openT(t, cfg, Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond})
	o := newOutage()
	if err := s.Consume([]string{"app"}, o.deliver, nil); err != nil {
		t.Fatal(err)
	}
	const n = 8192 // more than maxPending
	fillApp(t, s, "app", 0, n, 20*time.Millisecond, true)
	time.Sleep(time.Second) // many backoff steps: every entry would have been tried several times

	if a := o.attempts.Load(); a > 200 {
		t.Errorf("%d attempts while the provider was down, for %d entries: want a few probes", a, n)
	}
	if p := ackPending(t, s, "app"); p > maxPending {
		t.Errorf("%d entries pending in the consumer, want at most %d", p, maxPending)
	}
	if got, _, _ := s.Stats(context.Background()); got != n {
		t.Fatalf("%d entries waiting, want %d", got, n)
	}

	o.down.Store(false)
	waitEmpty(t, s, 30*time.Second)
	time.Sleep(100 * time.Millisecond)
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.delivered) != n {
		t.Errorf("%d entries delivered, want %d", len(o.delivered), n)
	}
	for d, c := range o.delivered {
		if c != 1 {
			t.Errorf("%s delivered %d times", d, c)
		}
	}
	// Oldest first: apart from the few probed entries, which come back
	// when their backoff ends, and the reordering of concurrent deliveries,
	// the drain follows the order of the Puts: the median entry of each
	// tenth of the Puts is delivered after that of the tenth before it.
	var tenths [10][]int
	for pos, d := range o.order {
		var i int
		if _, err := fmt.Sscanf(d, "dev%d", &i); err != nil {
			t.Fatal(err)
		}
		tenths[i*10/n] = append(tenths[i*10/n], pos) // ascending
	}
	for k := 1; k < 10; k++ {
		prev, cur := tenths[k-1][len(tenths[k-1])/2], tenths[k][len(tenths[k])/2]
		if cur <= prev {
			t.Errorf("the Puts' tenth %d was delivered before tenth %d (median positions %d, %d)", k, k-1, cur, prev)
		}
	}
}

// A provider that asks for a pause with Retry-After gets it from the
// probes too.
func TestOutageProbesHonourRetryAfter(t *testing.T) {
	cfg := testConfig(t)
	s := openT(t, cfg, Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond})
	o := newOutage()
	o.retryAfter = 400 * time.Millisecond
	if err := s.Consume([]string{"app"}, o.deliver, nil); err != nil {
		t.Fatal(err)
	}
	fillApp(t, s, "app", 0, 100, 0, false)
	waitFor(t, 5*time.Second, "the app to fail", func() bool { return o.attempts.Load() >= failThreshold })
	time.Sleep(100 * time.Millisecond) // the in-flight calls of the first batch end
	before := o.attempts.Load()
	time.Sleep(time.Second)
	if got := o.attempts.Load() - before; got > 4 {
		t.Errorf("%d probes in 1s with Retry-After 400ms, want at most 3", got)
	}
}

// The heap does not grow with the number of entries waiting out an
// outage: JetStream keeps no state per entry it has not handed out.
func TestOutageHeapFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("spools 60,000 entries")
	}
	cfg := testConfig(t)
	cfg.MaxAge = time.Hour
	s := openT(t, cfg, Backoff{Initial: 50 * time.Millisecond, Max: time.Second})
	o := newOutage()
	if err := s.Consume([]string{"app"}, o.deliver, nil); err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC() // the second one empties the sync.Pools of block buffers
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// No ack ids: the (short) duplicate window is not what is measured.
	fillApp(t, s, "app", 0, 20_000, 50*time.Millisecond, false)
	time.Sleep(11 * time.Second) // the block caches of the fill expire (10s)
	h1 := heap()
	const more = 40_000
	fillApp(t, s, "app", 20_000, more, 50*time.Millisecond, false)
	time.Sleep(11 * time.Second)
	h2 := heap()
	per := (float64(h2) - float64(h1)) / more
	t.Logf("heap %d KiB at 20,000 waiting, %d KiB at 60,000: %.1f B per entry", h1>>10, h2>>10, per)
	if per > 32 {
		t.Errorf("the heap grows %.0f bytes per waiting entry, want it flat", per)
	}
}

func TestDuplicateWindowShort(t *testing.T) {
	s := openT(t, Config{Dir: t.TempDir(), MaxAge: time.Hour}, fastBackoff)
	info, err := s.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Config.Duplicates; got != dedupWindow {
		t.Errorf("duplicate window %s, want %s: JetStream keeps every id of it in memory", got, dedupWindow)
	}
}
