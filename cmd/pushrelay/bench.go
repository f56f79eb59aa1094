//go:build !nodemo

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/loadgen"
)

// bench wires `pushrelay bench` to the load generator.
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "send_push URL of the relay to load (e.g. http://127.0.0.1:8066/api/v1/send_push)")
	sandboxed := fs.Bool("sandbox", false, "start APNs/FCM look-alikes and a relay process against them, and measure a direct client too")
	c := fs.Int("c", 32, "concurrent senders")
	rate := fs.Float64("rate", 0, "send this many notifications per second in all, each when due (open loop; latency counts from then); 0: as fast as the senders get answers")
	n := fs.Int("n", 0, "stop after this many requests")
	d := fs.Duration("d", 0, "stop after this long (default 10s when -n is not set)")
	pid := fs.Int("pid", 0, "a local relay process to report CPU and system calls per notification and peak RSS for")
	apnsShare := fs.Float64("apns-share", 0.5, "fraction of notifications for iOS (the rest Android)")
	kinds := fs.String("mix", "8:1:1", "message:clear:id_loaded weights")
	dead := fs.Float64("dead", 0.05, "fraction of notifications to dead device tokens")
	apnsPlatform := fs.String("apns-platform", "apple_rn", "platform name of the iOS app")
	fcmPlatform := fs.String("fcm-platform", "android_rn", "platform name of the Android app")
	extra := fs.String("relay-config", "", "with --sandbox: YAML appended to the relay's configuration (e.g. 'log: {audit: false}')")
	baseline := fs.Bool("baseline", true, "with --sandbox: first measure a bare HTTP/2 client for as long (-baseline=false for a soak)")
	profile := fs.String("relay-profile", "", "with --sandbox: write the relay's CPU profile over the relay run to this file (go tool pprof)")
	latency := fs.Duration("upstream-latency", 0, "with --sandbox: the APNs/FCM look-alikes answer every push this late (e.g. 20ms)")
	faults := fs.Float64("faults", 0, "with --sandbox: fraction of pushes the look-alikes refuse, at random, with a retryable 503 (e.g. 0.05)")
	runs := fs.Int("runs", 1, "with --sandbox: measure this many turns (the direct client, then the relay) one after the other, and summarize them")
	selfProfile := fs.String("cpuprofile", "", "write this process's CPU profile (the load generator's) to this file")
	outage := fs.Int("outage", 0, "with --sandbox: send this many notifications during a total outage of both upstreams, then recover; "+
		"report the relay's answer rate, memory and spool size by depth, the drain, and memory a minute later (sizes a host)")
	outageSteps := fs.Int("outage-steps", 10, "with -outage: measure the fill in this many steps")
	settle := fs.Duration("settle", time.Minute, "with -outage: measure the relay's memory again this long after the drain")
	outageRestart := fs.String("outage-restart", "", "with -outage: restart the relay when the spool is half the outage deep, while the senders send: "+
		"kill (SIGKILL) or term (SIGTERM, then wait for its exit); report how long until it is ready again, and account for every notification by ack id")
	if err := fs.Parse(args); err != nil {
		return err
	}
	restartSignal, err := outageRestartSignal(*outageRestart, *outage)
	if err != nil {
		return err
	}
	if *selfProfile != "" {
		f, err := os.Create(*selfProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *rate < 0 {
		return fmt.Errorf("-rate: must be 0 or a number of notifications per second, got %g", *rate)
	}
	if *runs < 1 {
		return fmt.Errorf("-runs: must be 1 or more, got %d", *runs)
	}
	if !*sandboxed && (*latency != 0 || *faults != 0 || *runs != 1 || *outage != 0) {
		return fmt.Errorf("-upstream-latency, -faults, -runs and -outage need --sandbox")
	}
	if *outage < 0 || *outage > 0 && (*runs != 1 || *profile != "" || *faults != 0) {
		return fmt.Errorf("-outage: a positive count of notifications, without -runs, -relay-profile or -faults")
	}
	mix := loadgen.Mix{APNsShare: *apnsShare, DeadShare: *dead}
	w := strings.Split(*kinds, ":")
	if len(w) != 3 {
		return fmt.Errorf("-mix: want message:clear:id_loaded, got %q", *kinds)
	}
	for i, p := range []*int{&mix.Message, &mix.Clear, &mix.IDLoaded} {
		v, err := strconv.Atoi(w[i])
		if err != nil || v < 0 {
			return fmt.Errorf("-mix: %q is not a weight", w[i])
		}
		*p = v
	}
	if *n == 0 && *d == 0 && *outage == 0 {
		*d = 10 * time.Second
	}
	if *profile != "" && (*runs != 1 || *d == 0) {
		return fmt.Errorf("-relay-profile profiles one run of a set duration: use it with -d and without -runs")
	}
	opt := loadgen.Options{URL: *url, Concurrency: *c, Rate: *rate, Requests: *n, Duration: *d, Mix: mix,
		APNsPlatform: *apnsPlatform, FCMPlatform: *fcmPlatform, PID: *pid, Progress: stderr}

	if !*sandboxed {
		if opt.URL == "" {
			return fmt.Errorf("-url is required without --sandbox")
		}
		rep, err := loadgen.Run(ctx, opt)
		if err != nil {
			return err
		}
		rep.Print(stdout)
		return nil
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	rig, err := loadgen.StartRig(self, *profile != "", *extra)
	if err != nil {
		return err
	}
	defer rig.Close()
	if err := rig.SetUpstream(*latency, *faults); err != nil {
		return err
	}
	pace := "as fast as answered"
	if *rate > 0 {
		pace = fmt.Sprintf("at %g/s", *rate)
	}
	if *outage > 0 {
		restart := ""
		if restartSignal != nil {
			restart = fmt.Sprintf(", the relay restarted with %s in the middle", map[string]string{"kill": "SIGKILL", "term": "SIGTERM"}[*outageRestart])
		}
		fmt.Fprintf(stdout, "sandbox: relay pid %d; %d senders %s; mix %s, %.0f%% iOS; a total outage of both upstreams during %d notifications%s\n\n",
			rig.PID, *c, pace, *kinds, *apnsShare*100, *outage, restart)
		rep, err := rig.Outage(ctx, loadgen.OutageOptions{Load: opt, N: *outage, Steps: *outageSteps, Settle: *settle, Restart: restartSignal})
		if err != nil {
			return err
		}
		rep.Print(stdout)
		return rep.Err()
	}
	fmt.Fprintf(stdout, "sandbox: relay pid %d; %d senders %s; mix %s, %.0f%% iOS, %.0f%% dead tokens; upstream latency %s, %g%% faults\n\n",
		rig.PID, *c, pace, *kinds, *apnsShare*100, *dead*100, *latency, *faults*100)
	if *runs == 1 {
		t, err := turn(ctx, rig, opt, *baseline, *profile, stdout, stderr)
		if err != nil {
			return err
		}
		return t.Drained
	}
	turns := make([]loadgen.Turn, 0, *runs)
	for i := range *runs {
		t, err := turn(ctx, rig, opt, *baseline, "", nil, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "turn %d of %d: %s\n", i+1, *runs, t.Line())
		turns = append(turns, t)
	}
	fmt.Fprintln(stdout)
	loadgen.Summarize(stdout, turns)
	return loadgen.Drained(turns)
}

// outageRestartSignal is the signal -outage-restart names (nil for none),
// which only -outage takes.
func outageRestartSignal(name string, outage int) (os.Signal, error) {
	const allowed = "kill (SIGKILL) or term (SIGTERM, then wait for the exit)"
	var sig os.Signal
	switch name {
	case "":
		return nil, nil
	case "kill":
		sig = syscall.SIGKILL
	case "term":
		sig = syscall.SIGTERM
	default:
		return nil, fmt.Errorf("-outage-restart: want %s, got %q", allowed, name)
	}
	if outage <= 0 {
		return nil, fmt.Errorf("-outage-restart %s restarts the relay in the middle of an outage: use it with --sandbox -outage N (values: %s)", name, allowed)
	}
	return sig, nil
}

// turn measures the direct client (with baseline), then the relay, on rig,
// and counts what the relay delivered once its spool is empty. With
// profile, the relay's CPU profile over its run goes to that file. With
// report not nil, the reports are written there in full as they come.
func turn(ctx context.Context, rig *loadgen.Rig, opt loadgen.Options, baseline bool, profile string, report, progress io.Writer) (loadgen.Turn, error) {
	var t loadgen.Turn
	var err error
	if report == nil {
		report = io.Discard
	}
	if baseline {
		if t.Direct, err = rig.Direct(ctx, opt); err != nil {
			return t, err
		}
		fmt.Fprintln(report, "== a bare HTTP/2 client straight to the APNs look-alike (the ceiling of this machine)")
		t.Direct.Print(report)
	}
	// What the relay delivers is counted from here.
	if err := rig.ResetDelivered(ctx); err != nil {
		return t, err
	}
	opt.URL, opt.PID = rig.URL, rig.PID
	profiled := make(chan error, 1)
	if profile != "" {
		go func() { profiled <- rig.Profile(ctx, opt.Duration, profile) }()
	}
	if t.Relay, err = loadgen.Run(ctx, opt); err != nil {
		return t, err
	}
	if profile != "" {
		if err := <-profiled; err != nil {
			return t, err
		}
		fmt.Fprintf(progress, "relay CPU profile: %s\n", profile)
	}
	fmt.Fprintln(report, "\n== Mattermost-shaped load through the relay")
	t.Relay.Print(report)
	// The spool redelivers what the look-alikes refused; count once it is empty.
	if t.Drained = rig.Drain(ctx, drainLimit, progress); t.Drained != nil {
		fmt.Fprintf(report, "spool      %v\n", t.Drained)
	}
	delivered, err := rig.Delivered(ctx)
	if err != nil {
		return t, err
	}
	t.Delivery = loadgen.Accounting{Accepted: t.Relay.LiveOK, Delivered: delivered}
	fmt.Fprintf(report, "delivery   %s\n", t.Delivery)
	if tp, p99 := t.Ratios(); tp > 0 {
		fmt.Fprintf(report, "\nrelay/direct throughput ratio %.2f, p99 ratio %.2f\n", tp, p99)
	}
	return t, nil
}

// drainLimit bounds the wait for the relay's spool to empty after a
// --sandbox run.
const drainLimit = 2 * time.Minute
