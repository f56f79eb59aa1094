package heapfloor_test

import (
	"fmt"
	"runtime/debug"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/heapfloor"
)

// A server whose live heap is a few megabytes collects at GOGC=50 once its
// heap is past 10 MiB, and not before.
func ExampleStart() {
	f := heapfloor.Start(10<<20, 50)
	// ... serve ...
	f.Stop()
	fmt.Println(debug.SetGCPercent(100)) // back to the base
	// Output: 50
}
