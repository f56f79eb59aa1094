package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// OutageOptions shape Rig.Outage: a total outage of both upstreams while
// N notifications arrive, then the recovery.
type OutageOptions struct {
	// Load is the shape of the load (senders, rate, mix, platforms,
	// progress); its Requests, Duration, URL and PID are set by Outage.
	// Dead device tokens are left out: during an outage nothing can tell
	// them apart, and the accounting follows every notification answered
	// OK to its delivery.
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
	// Restart, when not nil (syscall.SIGKILL or syscall.SIGTERM), stops
	// the relay that way in the middle of the fill, once the spool holds
	// N/2 notifications, while the senders send, and starts it again on
	// the same configuration and spool (Rig.Restart).
	Restart os.Signal
}

// OutageStep is the relay as one step of the fill left it.
type OutageStep struct {
	Depth     int64   // notifications in the spool at the step's end
	Rate      float64 // answers per second during the step (no answer at all is not one)
	Report    Report  // the step's load report
	RSS, Disk int64   // the relay's VmRSS and the spool directory's size at the step's end, in bytes
}

// OutageRestart is the relay's restart in the middle of the fill.
type OutageRestart struct {
	Restarted
	// Step is the index of the step during which the relay restarted.
	Step int
	// Depth is the spool's depth just before the signal; Sending tells
	// whether the step's senders were still sending then (not when
	// refusals kept the spool short of N/2 until the step's end).
	Depth   int64
	Sending bool
	// Recovered is the new process's spool depth once it was ready.
	Recovered int64
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
	// Delivery compares, by ack id, what the relay answered OK during the
	// outage with what reached the look-alikes after it.
	Delivery IDAccounting
	// Fail counts the FAIL answers, HTTP errors and requests without an
	// answer of the fill (a spool full or refusing, a relay restarting).
	Fail int64
	// Restart is the relay's restart (nil without OutageOptions.Restart).
	// The RSS figures from its step on are the new process's.
	Restart *OutageRestart
}

// Outage runs a total outage on the rig: a warm-up with the upstreams
// healthy, then both look-alikes refuse every push (503) while opt.N
// notifications are sent, measured in opt.Steps steps (answer rate, the
// relay's RSS and the spool's size by depth), with the relay restarted in
// the middle when opt.Restart says so; then they recover and it times the
// drain, checks by ack id that every notification answered OK was
// delivered, and none twice, and measures the relay's memory after it.
// Progress goes to opt.Load.Progress.
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
	if err := r.ResetDeliveredByID(ctx); err != nil {
		return rep, err
	}

	// The outage: every push refused, every notification kept.
	if err := r.setFaults(ctx, 1); err != nil {
		return rep, err
	}
	restartStep, half := -1, int64(opt.N/2)
	if opt.Restart != nil {
		restartStep = middleStep(opt.N, opt.Steps)
	}
	var accepted []string
	for i := range opt.Steps {
		step := load
		step.Duration, step.KeepAcceptedIDs = 0, true
		step.Requests = stepSize(opt.N, opt.Steps, i)
		var lr Report
		if i == restartStep {
			fmt.Fprintf(progress, "outage, step %d of %d: %d notifications, the relay restarted once %d deep\n", i+1, opt.Steps, step.Requests, half)
			var rs OutageRestart
			lr, rs, err = r.runRestarting(ctx, step, half, opt.Restart)
			rs.Step = i
			rep.Restart = &rs
			load.PID = r.PID // the new process, for the later steps
		} else {
			fmt.Fprintf(progress, "outage, step %d of %d: %d notifications\n", i+1, opt.Steps, step.Requests)
			lr, err = Run(ctx, step)
		}
		if err != nil {
			return rep, err
		}
		accepted = append(accepted, lr.AcceptedIDs...)
		lr.AcceptedIDs = nil // the report keeps the accounting, not the ids
		rep.Fail += lr.Fail + lr.HTTPErrors + lr.TransportErrors
		s := OutageStep{Report: lr, Disk: dirSize(r.spoolDir())}
		if lr.Elapsed > 0 {
			s.Rate = float64(lr.Requests-lr.TransportErrors) / lr.Elapsed.Seconds()
		}
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
	delivered, err := r.DeliveredIDs(ctx)
	if err != nil {
		return rep, err
	}
	rep.Delivery = CompareIDs(accepted, delivered)

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
	if delivered, err = r.DeliveredIDs(ctx); err == nil {
		rep.Delivery = CompareIDs(accepted, delivered)
	}
	return rep, nil
}

// stepSize is how many of n notifications step i of steps sends.
func stepSize(n, steps, i int) int { return n/steps + btoi(i < n%steps) }

// middleStep is the step of the fill during which the spool passes n/2
// deep, the first whose end is deeper: in it the senders are still
// sending at n/2.
func middleStep(n, steps int) int {
	end := 0
	for i := range steps {
		if end += stepSize(n, steps, i); end > n/2 {
			return i
		}
	}
	return steps - 1
}

// restartPoll is how often runRestarting reads the spool's depth.
const restartPoll = 50 * time.Millisecond

// runRestarting runs step, and while it runs restarts the relay with sig
// once its spool is depth deep and deeper than when the step started, so
// that the step's senders are being answered (or once the step is over,
// if it never gets there).
func (r *Rig) runRestarting(ctx context.Context, step Options, depth int64, sig os.Signal) (Report, OutageRestart, error) {
	var rs OutageRestart
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	before, err := r.SpoolMessages(ctx)
	if err != nil {
		return Report{}, rs, err
	}
	type result struct {
		rep Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := Run(ctx, step)
		done <- result{rep, err}
	}()
	var res *result
	finish := func(err error) (Report, OutageRestart, error) {
		if err != nil {
			cancel()
		}
		if res == nil {
			x := <-done
			res = &x
		}
		return res.rep, rs, errors.Join(err, res.err)
	}
	tick := time.NewTicker(restartPoll)
	defer tick.Stop()
	for {
		n, err := r.SpoolMessages(ctx)
		if err != nil {
			return finish(err)
		}
		if rs.Depth = n; n >= depth && n > before || res != nil {
			break
		}
		select {
		case x := <-done:
			res = &x
		case <-tick.C:
		}
	}
	rs.Sending = res == nil
	if rs.Restarted, err = r.Restart(ctx, sig); err != nil {
		return finish(err)
	}
	if rs.Recovered, err = r.SpoolMessages(ctx); err != nil {
		return finish(err)
	}
	return finish(nil)
}

// Print writes the report for a person.
func (o OutageReport) Print(w io.Writer) {
	fmt.Fprintf(w, "before     relay RSS %s, spool %s\n", megabytes(o.BeforeRSS), megabytes(o.BeforeDisk))
	fmt.Fprintf(w, "%10s  %12s  %10s  %10s  %10s  %12s\n", "depth", "answers/s", "rate ratio", "RSS", "RSS-before", "spool disk")
	for i, s := range o.Steps {
		ratio := 0.0
		if r0 := o.Steps[0].Rate; r0 > 0 {
			ratio = s.Rate / r0
		}
		mark := ""
		if o.Restart != nil && i >= o.Restart.Step {
			mark = " *" // the new process's
		}
		fmt.Fprintf(w, "%10d  %12.0f  %10.2f  %10s  %10s  %12s%s\n", s.Depth, s.Rate, ratio,
			megabytes(s.RSS), megabytes(s.RSS-o.BeforeRSS), megabytes(s.Disk), mark)
	}
	if o.Fail > 0 {
		fmt.Fprintf(w, "refused    %d notifications answered FAIL or not at all during the outage\n", o.Fail)
	}
	if rs := o.Restart; rs != nil {
		o.printRestart(w, rs)
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

// printRestart writes the restart's lines of the report.
func (o OutageReport) printRestart(w io.Writer, rs *OutageRestart) {
	when := "the senders still sending"
	if !rs.Sending {
		when = "after its step's senders were done (refusals kept the spool short of half the outage)"
	}
	fmt.Fprintf(w, "restart    %s at depth %s, %s: pid %d gone in %.2f s (%s); ready again in %.2f s (listening in %.2f s, and /readyz 200), pid %d, its spool %s deep\n",
		rs.Signal, thousands(rs.Depth), when, rs.OldPID, rs.Exited.Seconds(), rs.Exit, rs.Ready.Seconds(), rs.Listening.Seconds(), rs.NewPID, thousands(rs.Recovered))
	var after []string
	for _, s := range o.Steps[rs.Step:] {
		after = append(after, megabytes(s.RSS))
	}
	fmt.Fprintf(w, "           RSS after it, the new process's (* above: the RSS column is then its): %s at the ends of the steps from depth %s on; %s after the drain\n",
		strings.Join(after, ", "), thousands(o.Steps[rs.Step].Depth), megabytes(o.AfterRSS))
}

// thousands formats n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Err is not nil when a notification answered OK was lost, or one was
// delivered more than once.
func (o OutageReport) Err() error {
	if err := o.Delivery.Err(); err != nil {
		return fmt.Errorf("outage: %w", err)
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
