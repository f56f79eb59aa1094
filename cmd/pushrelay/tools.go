//go:build !nodemo

package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/demo"
	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/loadgen"
)

// The demo, bench and the look-alikes they run are in every build but the
// container image's (-tags nodemo): a relay in production needs none of
// them.

// serveLookalikes serves bench --sandbox's look-alikes when this process
// was started for that, and then returns the exit code and true.
func serveLookalikes(ctx context.Context) (int, bool) {
	dir := os.Getenv(loadgen.LookalikesEnv)
	if dir == "" {
		return 0, false
	}
	if err := loadgen.ServeLookalikes(ctx, dir, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "pushrelay: look-alikes: %v\n", err)
		return 1, true
	}
	return 0, true
}

func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("demo")
	keep := fs.Bool("keep", false, "keep the relay and the look-alikes serving after the demo, until interrupted")
	if err := parseFlags(fs, args, stdout, demoUsage, 0); err != nil {
		return err
	}
	return demo.Run(ctx, stdout, demo.Options{Keep: *keep, Width: termWidth(stdout)})
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return bench(ctx, args, stdout, stderr)
}
