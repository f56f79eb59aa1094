package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"time"
)

// OutageOptions shape Rig.Outage: a total outage of both upstreams while
// N notifications arrive, then the recovery.
type OutageOptions struct {
	// Load is the shape of the load (senders, rate, mix, platforms,
	// progress); its Requests, Duration, URL and PID are set by Outage.
	// Dead device tokens are left out: during an outage nothing can tell
	// them apart, and the accounting counts deliveries.
	Load Options
	// N is how many notifications are sent during the outage.
	N int
	// Steps is how many measurements the fill is cut into (default 10).
	Steps int
	// Settle is how long after the drain the relay's memory is measured
	// once more (default 60s).
	Settle time.Duration
	// DrainLimit bounds the wait for the spool to empty (default 30m).
	DrainLimit time.Duration
	// Warmup is the length of the load before the outage, whose end gives
	// the "before" figures (default 5s).
	Warmup time.Duration
}

// OutageStep is the relay as one step of the fill left it.
type OutageStep struct {
	Depth     int64   // notifications in the spool at the step's end
	Rate      float64 // answers per second during the step
	Report    Report  // the step's load report
	RSS, Disk int64   // the relay's VmRSS and the spool directory's size at the step's end, in bytes
}

// OutageReport is what Rig.Outage measured.
type OutageReport struct {
	// Before is the relay's RSS and spool size after the warm-up.
	BeforeRSS, BeforeDisk int64
	Steps                 []OutageStep
	// Drain is the time from the upstreams' recovery to an empty spool;
	// Drained how many notifications it held then.
	Drain   time.Duration
	Drained int64
	// DrainPeakRSS is the highest RSS sampled during the drain; AfterRSS
	// the RSS right after it, SettledRSS the RSS Settle later.
	DrainPeakRSS, AfterRSS, SettledRSS int64
	Settle                             time.Duration
	// Delivery compares what the relay answered OK during the outage with
	// what reached the look-alikes after it.
	Delivery Accounting
	// Fail counts the FAIL answers and HTTP errors of the fill (a spool
	// full or refusing).
	Fail int64
}

// Outage runs a total outage on the rig: a warm-up with the upstreams
// healthy, then both look-alikes refuse every push (503) while opt.N
// notifications are sent, measured in opt.Steps steps (answer rate, the
// relay's RSS and the spool's size by depth); then they recover and it
// times the drain, checks that every notification answered OK was
// delivered once, and measures the relay's memory after it. Progress
// goes to opt.Load.Progress.
func (r *Rig) Outage(ctx context.Context, opt OutageOptions) (OutageReport, error) {
	var rep OutageReport
	if opt.N <= 0 {
		return rep, errors.New("loadgen: outage: N must be positive")
	}
	if opt.Steps <= 0 {
		opt.Steps = 10
	}
	opt.Steps = min(opt.Steps, opt.N)
	if opt.Settle <= 0 {
		opt.Settle = time.Minute
	}
	if opt.DrainLimit <= 0 {
		opt.DrainLimit = 30 * time.Minute
	}
	if opt.Warmup <= 0 {
		opt.Warmup = 5 * time.Second
	}
	progress := opt.Load.Progress
	if progress == nil {
		progress = io.Discard
	}
	load := opt.Load
	load.URL, load.PID = r.URL, r.PID
	load.Mix.DeadShare = 0

	// Before: the relay warmed up by a healthy load.
	fmt.Fprintf(progress, "warm-up, upstreams healthy, %s:\n", opt.Warmup)
	warm := load
	warm.Requests, warm.Duration = 0, opt.Warmup
	if _, err := Run(ctx, warm); err != nil {
		return rep, err
	}
	if err := r.Drain(ctx, time.Minute, progress); err != nil {
		return rep, err
	}
	time.Sleep(2 * time.Second)
	var err error
	if rep.BeforeRSS, err = currentRSS(r.PID); err != nil {
		return rep, fmt.Errorf("loadgen: outage: the relay's RSS: %w", err)
	}
	rep.BeforeDisk = dirSize(r.spoolDir())
	if err := r.ResetDelivered(ctx); err != nil {
		return rep, err
	}

	// The outage: every push refused, every notification kept.
	if err := r.setFaults(ctx, 1); err != nil {
		return rep, err
	}
	var accepted int64
	for i := range opt.Steps {
		step := load
		step.Duration = 0
		step.Requests = opt.N/opt.Steps + btoi(i < opt.N%opt.Steps)
		fmt.Fprintf(progress, "outage, step %d of %d: %d notifications\n", i+1, opt.Steps, step.Requests)
		lr, err := Run(ctx, step)
		if err != nil {
			return rep, err
		}
		accepted += lr.LiveOK
		rep.Fail += lr.Fail + lr.HTTPErrors + lr.TransportErrors
		s := OutageStep{Rate: lr.Throughput(), Report: lr, Disk: dirSize(r.spoolDir())}
		if s.Depth, err = r.SpoolMessages(ctx); err != nil {
			return rep, err
		}
		if s.RSS, err = currentRSS(r.PID); err != nil {
			return rep, fmt.Errorf("loadgen: outage: the relay's RSS: %w", err)
		}
		rep.Steps = append(rep.Steps, s)
	}

	// The recovery: the spool drains at the upstreams' pace.
	if err := r.setFaults(ctx, 0); err != nil {
		return rep, err
	}
	start := time.Now()
	rep.Drained = rep.Steps[len(rep.Steps)-1].Depth
	stop := watchRSS(r.PID, &rep.DrainPeakRSS)
	err = r.Drain(ctx, opt.DrainLimit, progress)
	rep.Drain = time.Since(start)
	stop()
	if err != nil {
		return rep, err
	}
	rep.AfterRSS, _ = currentRSS(r.PID)
	delivered, err := r.Delivered(ctx)
	if err != nil {
		return rep, err
	}
	rep.Delivery = Accounting{Accepted: accepted, Delivered: delivered}

	// After: what the relay gives back.
	rep.Settle = opt.Settle
	for t := opt.Settle; t > 0; t -= time.Second {
		fmt.Fprintf(progress, "\rmemory after the drain, in %3.0fs", t.Seconds())
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	fmt.Fprintln(progress)
	rep.SettledRSS, _ = currentRSS(r.PID)
	// Late deliveries (none expected) count too.
	if delivered, err = r.Delivered(ctx); err == nil {
		rep.Delivery.Delivered = delivered
	}
	return rep, nil
}

// Print writes the report for a person.
func (o OutageReport) Print(w io.Writer) {
	fmt.Fprintf(w, "before     relay RSS %s, spool %s\n", megabytes(o.BeforeRSS), megabytes(o.BeforeDisk))
	fmt.Fprintf(w, "%10s  %12s  %10s  %10s  %10s  %12s\n", "depth", "answers/s", "rate ratio", "RSS", "RSS-before", "spool disk")
	for _, s := range o.Steps {
		ratio := 0.0
		if r0 := o.Steps[0].Rate; r0 > 0 {
			ratio = s.Rate / r0
		}
		fmt.Fprintf(w, "%10d  %12.0f  %10.2f  %10s  %10s  %12s\n", s.Depth, s.Rate, ratio,
			megabytes(s.RSS), megabytes(s.RSS-o.BeforeRSS), megabytes(s.Disk))
	}
	if o.Fail > 0 {
		fmt.Fprintf(w, "refused    %d notifications answered FAIL or not at all during the outage\n", o.Fail)
	}
	rate := 0.0
	if o.Drain > 0 {
		rate = float64(o.Drained) / o.Drain.Seconds()
	}
	fmt.Fprintf(w, "drain      %d notifications in %s: %.0f/s (from the upstreams' recovery to an empty spool)\n",
		o.Drained, o.Drain.Round(100*time.Millisecond), rate)
	fmt.Fprintf(w, "delivery   %s\n", o.Delivery)
	fmt.Fprintf(w, "after      relay RSS %s right after the drain (highest sampled during it %s), %s %s later (%s over before)\n",
		megabytes(o.AfterRSS), megabytes(o.DrainPeakRSS), megabytes(o.SettledRSS), o.Settle, megabytes(o.SettledRSS-o.BeforeRSS))
}

// Err is not nil when a notification answered OK was lost or delivered
// twice.
func (o OutageReport) Err() error {
	if o.Delivery.Lost() > 0 || o.Delivery.Duplicates() > 0 {
		return fmt.Errorf("outage: %s", o.Delivery)
	}
	return nil
}

// setFaults makes both look-alikes refuse that fraction of pushes with a
// 503: 1 is a total outage, 0 none.
func (r *Rig) setFaults(ctx context.Context, faults float64) error {
	q := url.Values{"latency": {"0s"}, "faults": {fmt.Sprint(faults)}}
	_, err := r.control(ctx, http.MethodPost, "/upstream?"+q.Encode())
	return err
}

// spoolDir is the relay's spool.dir.
func (r *Rig) spoolDir() string { return filepath.Join(r.dir, "spool") }

// dirSize is the size of the files under dir, in bytes (0 when it cannot
// be read).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// watchRSS samples pid's RSS every 250ms into peak (the highest) until
// stop is called.
func watchRSS(pid int, peak *int64) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, err := currentRSS(pid); err == nil {
				*peak = max(*peak, rss)
			}
			select {
			case <-quit:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(quit); <-done }
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
