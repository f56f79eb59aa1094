//go:build unix

package spool

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkPut measures durable Puts: from one caller, each waits for its
// own fsync; from 32 at once (a provider's outage sends every push to the
// spool), they share them. It reports the process's CPU time per Put and
// the fsync rounds per Put.
func BenchmarkPut(b *testing.B) {
	for _, callers := range []int{1, 32} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := openT(b, testConfig(b), fastBackoff)
			var n atomic.Int64
			rounds0, cpu0 := s.syncer.rounds.Load(), processCPU(b)
			b.SetParallelism((callers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					if err := s.Put(context.Background(), entry("app", fmt.Sprint(i), "dev"), 0); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(s.syncer.rounds.Load()-rounds0)/float64(b.N), "fsyncs/op")
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// BenchmarkCycle measures an entry's whole way through the spool, the way
// a push refused with "retry later" takes it: a durable Put with a
// notBefore, the early fetch handed back, the fetch once due, a delivery
// and the removal. It reports the process's CPU time per entry (user and
// system, the embedded JetStream's included), the figure that decides how
// much a relay slows down when some pushes fail.
func BenchmarkCycle(b *testing.B) {
	s := openT(b, testConfig(b), fastBackoff)
	var done atomic.Int64
	all := make(chan struct{})
	target := int64(b.N)
	deliver := func(context.Context, Entry, int) Verdict {
		if done.Add(1) == target {
			close(all)
		}
		return Verdict{Done: true}
	}
	if err := s.Consume([]string{"app"}, deliver, nil); err != nil {
		b.Fatal(err)
	}
	rounds0, cpu0 := s.syncer.rounds.Load(), processCPU(b)
	b.ResetTimer()
	var n atomic.Int64
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := s.Put(context.Background(), entry("app", fmt.Sprint(i), fmt.Sprint("dev", i)), 20*time.Millisecond); err != nil {
				b.Error(err)
				return
			}
		}
	})
	select {
	case <-all:
	case <-time.After(time.Minute):
		b.Fatalf("delivered %d of %d", done.Load(), b.N)
	}
	waitEmpty(b, s, time.Minute)
	b.StopTimer()
	b.ReportMetric(float64(s.syncer.rounds.Load()-rounds0)/float64(b.N), "fsyncs/op")
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchDepths are the depths BenchmarkDepth measures at: entries waiting
// out an outage of another app. 1,000,000 only with SPOOL_BENCH_1M set (it
// takes minutes to fill and about 700 MB of disk).
func benchDepths() []int {
	if os.Getenv("SPOOL_BENCH_1M") != "" {
		return []int{0, 100_000, 1_000_000}
	}
	return []int{0, 100_000}
}

// BenchmarkDepth measures the spool's operations while a depth of
// entries waits for an app whose deliveries all fail: put, a durable
// Put for that app (the answer to every push of an outage), and cycle, an
// entry of a healthy app put, fetched, delivered and acked. Their cost must
// not depend on the depth. It reports the process's heap after the fill.
// Acking the healthy app's entries behind the other's backlog makes
// JetStream's file store keep thousands of small block files; the syncer
// used to list and stat every one each round (cycle at 20000x: 0.3 ms/op
// at depth 0, 1.9 at 100,000, 3.6 at 1,000,000). With the directory's
// inotify watch a round looks at the files written alone: 0.12-0.40 ms/op
// at depth 0 and 0.13-0.26 at 100,000 on a shared 2-core machine.
func BenchmarkDepth(b *testing.B) {
	for _, depth := range benchDepths() {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			s := openT(b, benchConfig(b), Backoff{Initial: time.Second, Max: 5 * time.Minute})
			var delivered atomic.Int64
			deliver := func(_ context.Context, e Entry, _ int) Verdict {
				if e.App == "down" {
					return Verdict{}
				}
				delivered.Add(1)
				return Verdict{Done: true}
			}
			if err := s.Consume([]string{"down", "up"}, deliver, nil); err != nil {
				b.Fatal(err)
			}
			fillFast(b, s, "down", depth, time.Second)
			heap := heapMiB()
			var n atomic.Int64 // across runs: a repeated ack id would be a duplicate
			b.Run("put", func(b *testing.B) {
				b.SetParallelism(32 / runtime.GOMAXPROCS(0))
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := n.Add(1)
						if err := s.Put(context.Background(), entry("down", fmt.Sprint("put", i), fmt.Sprint("put", i)), time.Second); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(heap, "heap-MiB-at-depth")
			})
			b.Run("cycle", func(b *testing.B) {
				start := delivered.Load()
				b.SetParallelism(4)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := n.Add(1)
						if err := s.Put(context.Background(), entry("up", fmt.Sprint("cycle", i), fmt.Sprint("cycle", i)), 0); err != nil {
							b.Error(err)
							return
						}
					}
				})
				for deadline := time.Now().Add(time.Minute); delivered.Load()-start < int64(b.N); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatalf("delivered %d of %d", delivered.Load()-start, b.N)
					}
				}
			})
		})
	}
}

// BenchmarkDrain measures the drain after an outage: b.N entries of an
// app whose deliveries failed, fetched, delivered and acked once the app
// answers again, oldest first. Run it at a given depth with
// -benchtime=100000x.
func BenchmarkDrain(b *testing.B) {
	s := openT(b, benchConfig(b), Backoff{Initial: time.Second, Max: 5 * time.Minute})
	var down atomic.Bool
	down.Store(true)
	var delivered atomic.Int64
	deliver := func(context.Context, Entry, int) Verdict {
		if down.Load() {
			return Verdict{}
		}
		delivered.Add(1)
		return Verdict{Done: true}
	}
	if err := s.Consume([]string{"app"}, deliver, nil); err != nil {
		b.Fatal(err)
	}
	fillFast(b, s, "app", b.N, 10*time.Millisecond)
	heap := heapMiB()
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	down.Store(false)
	waitEmpty(b, s, 30*time.Minute)
	b.StopTimer()
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	if got := delivered.Load(); got != int64(b.N) {
		b.Errorf("delivered %d of %d", got, b.N)
	}
	b.ReportMetric(heap, "heap-MiB-at-depth")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// benchConfig is a spool big enough for a million entries.
func benchConfig(b *testing.B) Config {
	return Config{Dir: b.TempDir(), MaxAge: time.Hour, MaxMessages: 2_000_000, MaxBytes: 4 << 30}
}

// fillFast spools n entries for app, due after notBefore, as Put would,
// but published without waiting for each (the setup of a benchmark, not
// what it measures), and waits until every one is stored and synced.
func fillFast(b testing.TB, s *Spool, app string, n int, notBefore time.Duration) {
	b.Helper()
	if n == 0 {
		return
	}
	if bb, ok := b.(*testing.B); ok {
		bb.StopTimer()
		defer bb.StartTimer()
	}
	js, err := jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		e := entry(app, fmt.Sprint("fill", i), fmt.Sprintf("fill%07d", i))
		data, err := json.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		msg := nats.NewMsg(subject(app))
		msg.Data = data
		msg.Header.Set(hdrNotBefore, strconv.FormatInt(time.Now().Add(notBefore).UnixNano(), 10))
		msg.Header.Set(hdrAccepted, strconv.FormatInt(e.Accepted.UnixNano(), 10))
		if _, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(msgID(e.Notification))); err != nil {
			b.Fatal(err)
		}
		if i%2048 == 2047 || i == n-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("the fill was not acknowledged within a minute")
			}
		}
	}
	if err := s.syncer.wait(context.Background()); err != nil {
		b.Fatal(err)
	}
	if got, _, err := s.Stats(context.Background()); err != nil || got < int64(n) {
		b.Fatalf("%d entries stored of %d (%v)", got, n, err)
	}
	time.Sleep(2 * dedupWindow) // the fill's message ids leave the duplicate window
}

// heapMiB is the heap in use after a collection, in MiB.
func heapMiB() float64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}
