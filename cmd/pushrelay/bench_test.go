package main

import (
	"context"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/loadgen"
)

func TestBenchRefusesBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-n", "10"}, "-url is required"},
		{[]string{"-url", "http://127.0.0.1:1/api/v1/send_push", "-faults", "0.05"}, "need --sandbox"},
		{[]string{"-url", "http://127.0.0.1:1/api/v1/send_push", "-upstream-latency", "20ms"}, "need --sandbox"},
		{[]string{"-url", "http://127.0.0.1:1/api/v1/send_push", "-mix", "8:1"}, "-mix"},
		{[]string{"-url", "http://127.0.0.1:1/api/v1/send_push", "-runs", "3"}, "need --sandbox"},
		{[]string{"--sandbox", "-runs", "0"}, "-runs: must be 1 or more"},
		{[]string{"--sandbox", "-runs", "2", "-relay-profile", "relay.prof"}, "without -runs"},
		{[]string{"--sandbox", "-n", "100", "-relay-profile", "relay.prof"}, "with -d"},
		{[]string{"-url", "http://127.0.0.1:1/api/v1/send_push", "-outage", "1000"}, "need --sandbox"},
		{[]string{"--sandbox", "-outage", "1000", "-runs", "2"}, "-outage: a positive count"},
		{[]string{"--sandbox", "-outage", "-5"}, "-outage: a positive count"},
		{[]string{"--sandbox", "-outage-restart", "kill"}, "-outage-restart kill restarts the relay in the middle of an outage: use it with --sandbox -outage N (values: kill (SIGKILL) or term"},
		{[]string{"-url", "http://127.0.0.1:1/api/v1/send_push", "-outage-restart", "term"}, "-outage-restart term restarts the relay in the middle of an outage: use it with --sandbox -outage N"},
		{[]string{"--sandbox", "-outage", "1000", "-outage-restart", "stop"}, `-outage-restart: want kill (SIGKILL) or term (SIGTERM, then wait for the exit), got "stop"`},
		{[]string{"--sandbox", "-outage", "1000", "-outage-restart", "KILL"}, `-outage-restart: want kill (SIGKILL) or term`},
	}
	for _, tc := range tests {
		err := bench(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %q = %v, want an error about %q", tc.args, err, tc.want)
		}
	}
}

// TestBenchRigAccountsForEveryNotification runs what `bench --sandbox
// -faults` does, small: a relay process against look-alikes that refuse a
// tenth of the pushes, then the spool's redeliveries, then the accounting.
func TestBenchRigAccountsForEveryNotification(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a relay process")
	}
	rig := startFastRig(t)
	if err := rig.SetUpstream(time.Millisecond, 0.1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	opt := loadgen.Options{Concurrency: 8, Requests: 200, Mix: loadgen.DefaultMix(), APNsPlatform: "apple_rn", FCMPlatform: "android_rn"}

	direct, err := rig.Direct(ctx, opt)
	if err != nil || direct.Requests != 200 || direct.HTTPErrors == 0 || direct.OK+direct.HTTPErrors != 200 {
		t.Fatalf("direct: %+v, %v; want 200 requests, some refused", direct, err)
	}
	if got, err := rig.Delivered(ctx); got != 0 || err != nil {
		t.Fatalf("Delivered() = %d, %v after Direct, want 0", got, err)
	}

	opt.URL, opt.PID = rig.URL, rig.PID
	rep, err := loadgen.Run(ctx, opt)
	if err != nil || rep.Requests != 200 || rep.OK+rep.Remove != 200 || rep.LiveOK == 0 || len(rep.RSS) == 0 {
		t.Fatalf("relay run: %+v, %v; want 200 requests answered OK or REMOVE, RSS sampled", rep, err)
	}
	if err := rig.Drain(ctx, time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	delivered, err := rig.Delivered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acc := loadgen.Accounting{Accepted: rep.LiveOK, Delivered: delivered}
	if acc.Lost() != 0 || acc.Duplicates() != 0 {
		t.Errorf("%s", acc)
	}
}

// TestBenchTurnsCountEachTurnAlone runs two turns of `bench --sandbox
// -runs`, the second without the direct client: each turn's accounting
// covers its own run only.
func TestBenchTurnsCountEachTurnAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a relay process")
	}
	rig, err := loadgen.StartRig(relayBinary(t), false, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rig.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	opt := loadgen.Options{Concurrency: 4, Requests: 100, Mix: loadgen.DefaultMix(), APNsPlatform: "apple_rn", FCMPlatform: "android_rn"}
	for i, baseline := range []bool{true, false} {
		var report strings.Builder
		got, err := turn(ctx, rig, opt, baseline, "", &report, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if (got.Direct.Requests == 100) != baseline || got.Relay.Requests != 100 || got.Drained != nil {
			t.Errorf("turn %d: direct %d requests, relay %d, drained %v; want %d, 100, nil", i+1, got.Direct.Requests, got.Relay.Requests, got.Drained, map[bool]int{true: 100}[baseline])
		}
		if got.Delivery.Accepted == 0 || got.Delivery.Lost() != 0 || got.Delivery.Duplicates() != 0 {
			t.Errorf("turn %d: %s", i+1, got.Delivery)
		}
		if want := "delivery   " + got.Delivery.String(); !strings.Contains(report.String(), want) {
			t.Errorf("turn %d report:\n%s\nwant a line %q", i+1, report.String(), want)
		}
	}
}

// TestBenchOutage runs what `bench --sandbox -outage N` does, small: a
// total outage of both look-alikes during N notifications, measured by
// depth, then the recovery, the drain and the accounting.
func TestBenchOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a relay process")
	}
	rig := startFastRig(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	opt := loadgen.OutageOptions{
		Load: loadgen.Options{Concurrency: 8, Mix: loadgen.DefaultMix(), APNsPlatform: "apple_rn", FCMPlatform: "android_rn"},
		N:    1000, Steps: 4, Settle: time.Second, Warmup: 500 * time.Millisecond,
	}
	rep, err := rig.Outage(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Steps) != 4 || rep.Steps[3].Depth != 1000 || rep.Drained != 1000 || rep.Fail != 0 {
		t.Fatalf("steps %+v, drained %d, refused %d: want 4 steps ending 1000 deep, all 1000 kept and drained", rep.Steps, rep.Drained, rep.Fail)
	}
	for i, s := range rep.Steps {
		if want := int64(250 * (i + 1)); s.Depth != want || s.Rate <= 0 || s.RSS <= 0 || s.Disk <= 0 {
			t.Errorf("step %d: %+v, want %d deep, a rate, an RSS and a spool size", i+1, s, want)
		}
	}
	if d := rep.Delivery; d.Accepted != 1000 || d.Delivered != 1000 || d.Lost != 0 || d.Duplicates != 0 || d.Unanswered != 0 || rep.Err() != nil {
		t.Errorf("%s", rep.Delivery)
	}
	if rep.Restart != nil {
		t.Errorf("restart %+v without OutageOptions.Restart", rep.Restart)
	}
	if rep.BeforeRSS <= 0 || rep.AfterRSS <= 0 || rep.SettledRSS <= 0 || rep.DrainPeakRSS <= 0 || rep.Drain <= 0 {
		t.Errorf("memory before %d, after %d, settled %d, drain peak %d, drain %s: want them measured",
			rep.BeforeRSS, rep.AfterRSS, rep.SettledRSS, rep.DrainPeakRSS, rep.Drain)
	}
	var out strings.Builder
	rep.Print(&out)
	for _, want := range []string{"     depth     answers/s", "      1000  ", "drain      1000 notifications in ", "lost 0, duplicates 0", "after      relay RSS "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report:\n%s\nwant %q in it", out.String(), want)
		}
	}
	if strings.Contains(out.String(), "restart") {
		t.Errorf("report:\n%s\nwant no restart in it", out.String())
	}
}

// TestBenchOutageRestart runs what `bench --sandbox -outage N
// -outage-restart kill|term` does, small: the relay is stopped in the
// middle of the fill, while the senders send, and started again on its
// spool; every notification it answered OK is delivered once, by ack id.
func TestBenchOutageRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a relay process")
	}
	for _, tc := range []struct {
		sig  os.Signal
		name string
	}{{syscall.SIGKILL, "SIGKILL"}, {syscall.SIGTERM, "SIGTERM"}} {
		t.Run(tc.name, func(t *testing.T) {
			rig := startFastRig(t)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			firstPID := rig.PID
			// Paced, so that the middle step lasts long enough for the
			// spool's depth to be read during it.
			opt := loadgen.OutageOptions{
				Load: loadgen.Options{Concurrency: 8, Rate: 3000, Mix: loadgen.DefaultMix(), APNsPlatform: "apple_rn", FCMPlatform: "android_rn"},
				N:    3000, Steps: 4, Settle: time.Second, Warmup: 500 * time.Millisecond, Restart: tc.sig,
			}
			rep, err := rig.Outage(ctx, opt)
			if err != nil {
				t.Fatal(err)
			}
			rs := rep.Restart
			if rs == nil {
				t.Fatal("no restart reported")
			}
			if rs.Signal != tc.name || rs.Step != 2 || rs.Depth <= 0 || rs.OldPID != firstPID || rs.NewPID != rig.PID || rs.NewPID == firstPID {
				t.Errorf("restart %+v: want %s during step 3 at a depth, from pid %d to the rig's new pid %d", rs, tc.name, firstPID, rig.PID)
			}
			if rs.Exited <= 0 || rs.Listening < rs.Exited || rs.Ready < rs.Listening {
				t.Errorf("restart %+v: want it gone, then listening, then ready", rs)
			}
			if d := rep.Delivery; d.Accepted == 0 || d.Lost != 0 || d.Duplicates != 0 || rep.Err() != nil {
				t.Errorf("%s", d)
			}
			if last := rep.Steps[len(rep.Steps)-1]; last.RSS <= 0 || rep.Drained != last.Depth || rep.SettledRSS <= 0 {
				t.Errorf("after the restart: last step %+v, drained %d, settled RSS %d: want the new process measured", last, rep.Drained, rep.SettledRSS)
			}
			var out strings.Builder
			rep.Print(&out)
			for _, want := range []string{"restart    " + tc.name + " at depth ", "ready again in ", "(listening in ", "RSS after it, the new process's", " *\n", "lost 0, duplicates 0"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("report:\n%s\nwant %q in it", out.String(), want)
				}
			}
			t.Logf("report:\n%s", out.String())
		})
	}
}

// startFastRig starts a rig whose relay redelivers after 100 ms to 500 ms,
// closed when the test ends.
func startFastRig(t *testing.T) *loadgen.Rig {
	t.Helper()
	rig, err := loadgen.StartRig(relayBinary(t), false, "delivery: {backoff: {initial: 100ms, max: 500ms}}")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rig.Close)
	return rig
}
