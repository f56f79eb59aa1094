// Package heapfloor keeps the Go collector from running while the heap is
// small.
//
// GOGC sets the heap goal as a multiple of the live heap, so a process
// whose live heap is small collects very often: at 5 MB live and GOGC=50
// it collects every 2.5 MB it allocates, many times a second under load,
// for memory it does not need to give back. Start raises GOGC after each
// collection just enough that the next goal is at least a floor, and
// leaves it at its base value once the live heap is large enough to
// reach the floor on its own. The heap goal is then the larger of the
// floor and what the base GOGC gives, never more.
//
// It is the command's runtime tuning for serve and imports nothing of ours.
package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// minimumHeap is the runtime's least heap goal at GOGC=100; it scales with
// GOGC (4 MiB at 100, 40 MiB at 1000), so it bounds the GOGC that Start sets:
// past floor/minimumHeap*100 the minimum alone would put the goal above
// the floor.
const minimumHeap = 4 << 20

// Floor holds the collector's heap goal at or above a number of bytes. It
// is made by Start and ended by Stop.
type Floor struct {
	bytes uint64
	base  int

	mu      sync.Mutex
	stopped bool
	samples [3]metrics.Sample
	// adjusted, if set, is called after each adjustment (tests).
	adjusted func(percent int)
}

// sentinel is allocated to learn of each collection: its cleanup runs
// after the collection that found it unreachable. It holds a pointer so
// that it is not put in the tiny allocator, whose blocks may be freed late.
type sentinel struct{ _ *byte }

// Start sets GOGC to base and, after each collection, raises it as far as
// needed for the next heap goal to be at least floor bytes. It computes
// the goal as the runtime does: the live heap plus GOGC percent of the
// live heap, the stacks and the globals. Start returns at once; the Floor
// works until Stop.
func Start(floor uint64, base int) *Floor {
	f := &Floor{bytes: floor, base: base}
	f.samples[0].Name = "/gc/heap/live:bytes"
	f.samples[1].Name = "/gc/scan/stack:bytes"
	f.samples[2].Name = "/gc/scan/globals:bytes"
	f.mu.Lock()
	f.adjust()
	f.mu.Unlock()
	arm(f)
	return f
}

// Stop ends the adjustments and sets GOGC back to the base value.
func (f *Floor) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	debug.SetGCPercent(f.base)
}

func arm(f *Floor) {
	runtime.AddCleanup(&sentinel{}, (*Floor).collected, f)
}

// collected runs after each collection, on the runtime's cleanup
// goroutine. It arms the next sentinel first, so that a collection which
// starts once adjust is done finds it unreachable.
func (f *Floor) collected() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	arm(f)
	f.adjust()
}

// adjust sets GOGC for the next cycle from the last one's figures. f.mu
// is held.
func (f *Floor) adjust() {
	metrics.Read(f.samples[:])
	live := f.samples[0].Value.Uint64()
	scanned := live + f.samples[1].Value.Uint64() + f.samples[2].Value.Uint64()
	p := percent(f.bytes, live, scanned, f.base)
	debug.SetGCPercent(p)
	if f.adjusted != nil {
		f.adjusted(p)
	}
}

// percent is the GOGC that gives a heap goal of at least floor bytes, given
// the live heap and the bytes the collector scans from (live heap, stacks
// and globals), and never less than base: the runtime's goal is
// live + scanned*GOGC/100, and at least minimumHeap*GOGC/100. A live heap
// of 0 means no collection has run yet, and gets base.
func percent(floor, live, scanned uint64, base int) int {
	if live == 0 || live >= floor {
		return base
	}
	p := int(((floor-live)*100 + scanned - 1) / scanned)      // rounded up
	least := int((floor*100 + minimumHeap - 1) / minimumHeap) // rounded up
	return max(min(p, least), base)
}
