// Package loadgen is pushrelay's load generator: a closed loop of
// Mattermost-shaped send_push requests against any relay (or push proxy),
// with the outcome counts, latency percentiles and, for a local process,
// the CPU per notification and peak RSS it cost.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// Mix is the shape of the load: which provider, which kind of push, and
// how many device tokens are dead.
type Mix struct {
	// APNsShare is the fraction of notifications for the APNs platform;
	// the rest go to the FCM platform.
	APNsShare float64
	// Message, Clear and IDLoaded weigh the kinds of push.
	Message, Clear, IDLoaded int
	// DeadShare is the fraction of notifications to a dead device token.
	DeadShare float64
}

// DefaultMix is a large server's burst: half iOS, half Android, messages
// mostly, 5% uninstalled apps.
func DefaultMix() Mix { return Mix{APNsShare: 0.5, Message: 8, Clear: 1, IDLoaded: 1, DeadShare: 0.05} }

// Options bound and aim a run.
type Options struct {
	// URL is the send_push URL, e.g. http://127.0.0.1:8066/api/v1/send_push.
	URL string
	// Concurrency is the number of senders, each with one request in flight.
	Concurrency int
	// Requests and Duration bound the run; the first reached ends it. At
	// least one must be set.
	Requests int
	Duration time.Duration
	Mix      Mix
	// APNsPlatform and FCMPlatform are the platform names sent.
	APNsPlatform, FCMPlatform string
	// PID, when not 0, is a local relay process whose CPU time and peak
	// RSS the report includes.
	PID int
	// Progress, when not nil, gets a progress line every second.
	Progress io.Writer
}

// DeadToken returns the i-th device token the load generator treats as
// dead; a look-alike upstream should refuse these.
func DeadToken(apns bool, i int) string {
	if apns {
		return fmt.Sprintf("dead%060d", i)
	}
	return fmt.Sprintf("dead-fcm-token-%d", i)
}

// DeadTokens is how many distinct dead tokens of each kind a run uses.
const DeadTokens = 64

// Report is what a run measured.
type Report struct {
	Requests           int64
	OK, Remove, Fail   int64 // answers by status
	HTTPErrors         int64 // answers that were not HTTP 200
	TransportErrors    int64 // no answer at all
	Elapsed            time.Duration
	P50, P90, P99, Max time.Duration
	// CPU and PeakRSS describe Options.PID (zero without one).
	CPU     time.Duration
	PeakRSS int64 // bytes
}

// Throughput is requests per second.
func (r Report) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// CPUPerNotification is the measured process's CPU time per request.
func (r Report) CPUPerNotification() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Requests)
}

// Print writes the report for a person.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "requests   %d in %s: %.0f notifications/s\n", r.Requests, r.Elapsed.Round(time.Millisecond), r.Throughput())
	fmt.Fprintf(w, "answers    OK %d, REMOVE %d, FAIL %d, HTTP errors %d, no answer %d\n", r.OK, r.Remove, r.Fail, r.HTTPErrors, r.TransportErrors)
	fmt.Fprintf(w, "latency    p50 %s, p90 %s, p99 %s, max %s\n", r.P50, r.P90, r.P99, r.Max)
	if r.CPU > 0 {
		fmt.Fprintf(w, "relay      %s CPU per notification, peak RSS %.1f MB\n", r.CPUPerNotification(), float64(r.PeakRSS)/(1<<20))
	}
}

// Bodies returns n request bodies in the proportions of mix, as the
// Mattermost server marshals them.
func Bodies(n int, mix Mix, apnsPlatform, fcmPlatform string) [][]byte {
	rng := rand.New(rand.NewPCG(7, 11))
	total := mix.Message + mix.Clear + mix.IDLoaded
	out := make([][]byte, n)
	for i := range out {
		apns := rng.Float64() < mix.APNsShare
		platform, token := fcmPlatform, fmt.Sprintf("fcm-token-%08d-%s", i, "cKx9Qm2rT0vW8yZb4nJ1pL6sD3fG5hA7")
		if apns {
			platform, token = apnsPlatform, fmt.Sprintf("%064x", uint64(i)*0x9e3779b97f4a7c15)
		}
		if rng.Float64() < mix.DeadShare {
			token = DeadToken(apns, rng.IntN(DeadTokens))
		}
		n := wire.Notification{
			AckID: fmt.Sprintf("ack%023d", i), Platform: platform, ServerID: "bench-server-0001", DeviceID: token,
			Signature: "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJhY2tfaWQiOiJ4In0.c2lnbmF0dXJl", Version: "v2",
			ChannelID: "4xp9bkzfn3ym8j1wq6ce5tda7r", TeamID: "t5m1c8d4k3x9p7q2u2a6n0s1e0",
		}
		switch k := rng.IntN(max(total, 1)); {
		case k < mix.Message:
			n.Type, n.Category, n.PostID, n.SenderID = wire.TypeMessage, wire.CategoryCanReply, "p7q2k3x9m1c8d4t5u2a6n0s1e0", "u2a6p7q2k3x9m1c8d4t5n0s1e0"
			n.Message, n.ChannelName, n.SenderName, n.Badge = "@all the release is out, notes in the channel :tada:", "Town Square", "alice", 3
		case k < mix.Message+mix.Clear:
			n.Type = wire.TypeClear
		default:
			n.Type, n.Category, n.PostID, n.IsIDLoaded = wire.TypeMessage, wire.CategoryCanReply, "p7q2k3x9m1c8d4t5u2a6n0s1e0", true
			n.Message, n.Badge = "You've received a new message.", 3
		}
		out[i], _ = json.Marshal(n)
	}
	return out
}

// Run drives the load and measures it.
func Run(ctx context.Context, opt Options) (Report, error) {
	if opt.Requests <= 0 && opt.Duration <= 0 {
		return Report{}, errors.New("loadgen: set a request count (-n) or a duration (-d)")
	}
	if opt.Concurrency <= 0 {
		return Report{}, errors.New("loadgen: concurrency (-c) must be positive")
	}
	if opt.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opt.Duration)
		defer cancel()
	}
	bodies := Bodies(4096, opt.Mix, opt.APNsPlatform, opt.FCMPlatform)
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: opt.Concurrency, MaxConnsPerHost: opt.Concurrency, DisableCompression: true},
		Timeout:   30 * time.Second,
	}
	defer client.CloseIdleConnections()

	var rep Report
	var next atomic.Int64
	lat := make([][]time.Duration, opt.Concurrency)
	cpu0, _ := processCPU(opt.PID)
	start := time.Now()
	stopProgress := progress(opt.Progress, &next, start)
	var wg sync.WaitGroup
	for w := range opt.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1)
				if opt.Requests > 0 && i > int64(opt.Requests) {
					return
				}
				t0 := time.Now()
				status, code, err := post(ctx, client, opt.URL, bodies[int(i)%len(bodies)])
				d := time.Since(t0)
				switch {
				case err != nil && ctx.Err() != nil:
					return // the run's end cut this one off: not a result
				case err != nil:
					atomic.AddInt64(&rep.TransportErrors, 1)
				case code != http.StatusOK:
					atomic.AddInt64(&rep.HTTPErrors, 1)
				case status == wire.StatusOK:
					atomic.AddInt64(&rep.OK, 1)
				case status == wire.StatusRemove:
					atomic.AddInt64(&rep.Remove, 1)
				default:
					atomic.AddInt64(&rep.Fail, 1)
				}
				lat[w] = append(lat[w], d)
			}
		}()
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	stopProgress()
	if cpu1, err := processCPU(opt.PID); err == nil && opt.PID != 0 {
		rep.CPU = cpu1 - cpu0
		rep.PeakRSS, _ = peakRSS(opt.PID)
	}
	rep.setLatencies(slices.Concat(lat...))
	return rep, nil
}

func post(ctx context.Context, c *http.Client, url string, body []byte) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("User-Agent", "Mattermost-Bot/1.1")
	resp, err := c.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var r wire.Response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", resp.StatusCode, nil
	}
	return r.Status, resp.StatusCode, nil
}

// progress prints the count and rate every second until stopped.
func progress(w io.Writer, done *atomic.Int64, start time.Time) func() {
	if w == nil {
		return func() {}
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last, lastAt := int64(0), start
		for {
			select {
			case <-stop:
				fmt.Fprintln(w)
				return
			case now := <-t.C:
				n := done.Load()
				fmt.Fprintf(w, "\r%6.0fs  %9d sent  %7.0f/s now", now.Sub(start).Seconds(), n, float64(n-last)/now.Sub(lastAt).Seconds())
				last, lastAt = n, now
			}
		}
	}()
	return func() { close(stop); <-finished }
}

// setLatencies fills the count and percentiles from the run's latencies.
func (r *Report) setLatencies(all []time.Duration) {
	r.Requests = int64(len(all))
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	at := func(q float64) time.Duration { return all[min(len(all)-1, int(q*float64(len(all))))] }
	r.P50, r.P90, r.P99, r.Max = at(0.50), at(0.90), at(0.99), all[len(all)-1]
}
