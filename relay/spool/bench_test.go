//go:build unix

package spool

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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
