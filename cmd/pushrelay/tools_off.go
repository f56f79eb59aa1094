//go:build nodemo

package main

import (
	"context"
	"errors"
	"io"
)

// errNotInBuild answers demo and bench in a build made with -tags nodemo
// (the container image), which leaves out the look-alikes and the load
// generator.
var errNotInBuild = errors.New("not in this build (built with -tags nodemo, as the container image is, without the " +
	"APNs/FCM look-alikes and the load generator): run it from a build without that tag")

func serveLookalikes(context.Context) (int, bool) { return 0, false }

func runDemo(context.Context, []string, io.Writer) error { return errNotInBuild }

func runBench(context.Context, []string, io.Writer, io.Writer) error { return errNotInBuild }
