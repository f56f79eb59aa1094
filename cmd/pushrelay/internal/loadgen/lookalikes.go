package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

// LookalikesEnv names the environment variable that makes a pushrelay
// process the rig's look-alikes (ServeLookalikes) instead of running its
// command: StartRig sets it, to the directory for their credentials, when
// it starts them in a process of their own.
//
// They get their own process so that the load generator does not share a
// scheduler and a collector with them: in one process a response waited
// behind the look-alikes' goroutines, or their collection, before the
// load generator took its time, which widened the measured latencies
// (p99 2.8-3.1 times the mean, against 2.6-2.7 apart).
const LookalikesEnv = "PUSHRELAY_BENCH_LOOKALIKES"

// lookalikes is what the look-alikes' process announces, as one line of
// JSON on its standard output.
type lookalikes struct {
	Apple, Google string // the look-alikes' base URLs
	Control       string // base URL of the control listener
	Creds         sandbox.Credentials
}

// ServeLookalikes runs the rig's APNs and FCM look-alikes, which refuse the
// load generator's dead tokens, with their credentials written into dir.
// It announces their URLs and a control listener on out, and serves until
// in (the parent's end of a pipe) closes or ctx ends. The control listener
// takes POST /upstream?latency=&faults= (as Rig.SetUpstream), POST /reset
// (forget the deliveries so far; with ids=on, count them by ack id from
// then on, else not), GET /delivered (pushes answered 200) and GET
// /delivered-ids (the pushes answered 200 by ack id, as ranges: see
// writeIDRanges).
func ServeLookalikes(ctx context.Context, dir string, in io.Reader, out io.Writer) error {
	// The look-alikes are the rig, not what it measures: every cycle of
	// their collector is CPU the relay does not get on a shared machine.
	// Their heap is a few MB, so collecting at 8 times the live heap
	// instead of twice costs little memory and most of that CPU.
	debug.SetGCPercent(800)
	apple, google := sandbox.NewAPNs(), sandbox.NewFCM()
	defer apple.Close()
	defer google.Close()
	apple.SetRecording(false)
	google.SetRecording(false)
	for i := range DeadTokens {
		apple.KillToken(DeadToken(true, i), "Unregistered")
		google.KillToken(DeadToken(false, i), "UNREGISTERED")
	}
	creds, err := sandbox.WriteCredentials(dir, nil, google)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	both := []interface {
		Fail(sandbox.Fault)
		Recover()
	}{apple, google}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /upstream", func(w http.ResponseWriter, r *http.Request) {
		latency, err1 := time.ParseDuration(r.FormValue("latency"))
		faults, err2 := strconv.ParseFloat(r.FormValue("faults"), 64)
		if err := errors.Join(err1, err2); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f := sandbox.Fault{Delay: latency}
		if faults > 0 {
			f.Status, f.Rate = http.StatusServiceUnavailable, faults
		}
		for _, s := range both {
			if f == (sandbox.Fault{}) {
				s.Recover()
			} else {
				s.Fail(f)
			}
		}
	})
	mux.HandleFunc("POST /reset", func(_ http.ResponseWriter, r *http.Request) {
		byID := r.FormValue("ids") == "on"
		for _, s := range []interface {
			Reset()
			CountAckIDs(bool)
		}{apple, google} {
			s.Reset()
			s.CountAckIDs(byID)
		}
	})
	mux.HandleFunc("GET /delivered", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, apple.Delivered()+google.Delivered())
	})
	mux.HandleFunc("GET /delivered-ids", func(w http.ResponseWriter, _ *http.Request) {
		byID := apple.AckIDs()
		if byID == nil {
			http.Error(w, "not counting by ack id: POST /reset?ids=on first", http.StatusConflict)
			return
		}
		for id, n := range google.AckIDs() {
			byID[id] += n
		}
		writeIDRanges(w, byID)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	if err := json.NewEncoder(out).Encode(lookalikes{Apple: apple.URL(), Google: google.URL(),
		Control: "http://" + ln.Addr().String(), Creds: creds}); err != nil {
		return err
	}
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, in)
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
	}
	return nil
}

// readLookalikes reads the look-alikes' announcement from their output.
func readLookalikes(out io.Reader) (lookalikes, error) {
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return lookalikes{}, fmt.Errorf("the look-alikes did not start: %w", err)
	}
	var l lookalikes
	if err := json.Unmarshal([]byte(line), &l); err != nil {
		return lookalikes{}, fmt.Errorf("the look-alikes announced %q: %w", strings.TrimSpace(line), err)
	}
	return l, nil
}
