package spool

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkPut measures durable Puts (each fsynced) from concurrent callers.
func BenchmarkPut(b *testing.B) {
	s := openT(b, testConfig(b), fastBackoff)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := s.Put(context.Background(), entry("app", fmt.Sprint(i), "dev"), 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
