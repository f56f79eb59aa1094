// Package loadgen is pushrelay's load generator: a closed loop of
// Mattermost-shaped send_push requests against any relay (or push proxy),
// with the outcome counts, latency percentiles and, for a local process,
// the CPU, the read and write system calls per notification and the memory
// (RSS over the run, peak) it cost.
//
// It belongs to the command (pushrelay bench) and may import relay/wire,
// the providers and providers/sandbox, never relay itself: it measures a
// relay from outside. The nodemo build leaves it out.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
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
	// Rate, when not 0, makes the run an open loop: the senders send this
	// many requests per second in all, each when it is due, and a
	// request's latency counts from then, including any wait for a free
	// sender. At 0 every sender sends again as soon as it has its answer.
	Rate float64
	// Requests and Duration bound the run; the first reached ends it. At
	// least one must be set.
	Requests int
	Duration time.Duration
	Mix      Mix
	// APNsPlatform and FCMPlatform are the platform names sent.
	APNsPlatform, FCMPlatform string
	// PID, when not 0, is a local relay process whose CPU time, system
	// calls and memory the report includes: its RSS is sampled every second.
	PID int
	// Progress, when not nil, gets a progress line every second.
	Progress io.Writer
	// KeepAcceptedIDs makes the report list the ack ids of the
	// notifications for live device tokens answered OK (AcceptedIDs), to
	// account for them one by one.
	KeepAcceptedIDs bool
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
	LiveOK             int64 // OK answers to notifications for live (not dead) device tokens
	Dead, DeadRemove   int64 // answers to notifications for dead device tokens, and how many of them were REMOVE
	HTTPErrors         int64 // answers that were not HTTP 200
	TransportErrors    int64 // no answer at all
	Elapsed            time.Duration
	P50, P90, P99, Max time.Duration
	// CPU, PeakRSS and RSS describe Options.PID (zero without one).
	CPU     time.Duration
	PeakRSS int64 // bytes, the process's peak since it started (VmHWM)
	// Reads and Writes count the process's read and write system calls
	// over the run (zero when /proc/PID/io cannot be read).
	Reads, Writes int64
	// RSS holds the process's resident set size in bytes, sampled every
	// second of the run and once at its end.
	RSS []int64
	// AcceptedIDs holds the ack ids of the LiveOK answers, with
	// Options.KeepAcceptedIDs (in no particular order).
	AcceptedIDs []string
}

// Throughput is requests per second.
func (r Report) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// DeadRemoveShare is the fraction of the answers for dead device tokens
// that were REMOVE: the rest (OK for a notification kept in the spool)
// never told the Mattermost server to drop the device. 1 without dead
// tokens.
func (r Report) DeadRemoveShare() float64 {
	if r.Dead == 0 {
		return 1
	}
	return float64(r.DeadRemove) / float64(r.Dead)
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
	if r.Dead > 0 {
		fmt.Fprintf(w, "dead       %d of %d answers for dead device tokens were REMOVE (%.2f%%)\n", r.DeadRemove, r.Dead, r.DeadRemoveShare()*100)
	}
	fmt.Fprintf(w, "latency    p50 %s, p90 %s, p99 %s, max %s\n", r.P50, r.P90, r.P99, r.Max)
	if r.CPU > 0 {
		fmt.Fprintf(w, "relay      %s CPU per notification; peak RSS since the relay started (VmHWM) %.1f MB\n", r.CPUPerNotification(), float64(r.PeakRSS)/(1<<20))
	}
	if r.Requests > 0 && r.Reads+r.Writes > 0 {
		fmt.Fprintf(w, "syscalls   %.2f reads and %.2f writes per notification\n",
			float64(r.Reads)/float64(r.Requests), float64(r.Writes)/float64(r.Requests))
	}
	if len(r.RSS) > 0 {
		fmt.Fprintf(w, "rss        sampled every second of this run: %s\n", rssSummary(r.RSS))
	}
}

// rssSummary describes RSS samples taken every second: the RSS 10% and
// 50% into the run, at its end, and the highest sample.
func rssSummary(samples []int64) string {
	at := func(q float64) int64 { return samples[max(0, int(math.Ceil(q*float64(len(samples))))-1)] }
	return fmt.Sprintf("at 10%% of the run %s, at 50%% %s, at end %s, highest sample %s",
		megabytes(at(0.1)), megabytes(at(0.5)), megabytes(samples[len(samples)-1]), megabytes(slices.Max(samples)))
}

// megabytes formats a byte count in MB (MiB), one decimal.
func megabytes(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }

// Bodies returns n request bodies in the proportions of mix, as the
// Mattermost server marshals them.
func Bodies(n int, mix Mix, apnsPlatform, fcmPlatform string) [][]byte {
	out, _ := bodies(n, mix, apnsPlatform, fcmPlatform)
	return out
}

// bodies is Bodies, and for each body whether its device token is dead.
func bodies(n int, mix Mix, apnsPlatform, fcmPlatform string) (out [][]byte, dead []bool) {
	rng := rand.New(rand.NewPCG(7, 11))
	total := mix.Message + mix.Clear + mix.IDLoaded
	out, dead = make([][]byte, n), make([]bool, n)
	for i := range out {
		apns := rng.Float64() < mix.APNsShare
		platform, token := fcmPlatform, fmt.Sprintf("fcm-token-%08d-%s", i, "cKx9Qm2rT0vW8yZb4nJ1pL6sD3fG5hA7")
		if apns {
			platform, token = apnsPlatform, fmt.Sprintf("%064x", uint64(i)*0x9e3779b97f4a7c15)
		}
		if dead[i] = rng.Float64() < mix.DeadShare; dead[i] {
			token = DeadToken(apns, rng.IntN(DeadTokens))
		}
		n := wire.Notification{
			AckID: fmt.Sprintf("%s%023d", ackPrefix, i), Platform: platform, ServerID: "bench-server-0001", DeviceID: token,
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
	return out, dead
}

// ackPrefix starts the ack id of every body; 23 digits follow.
const ackPrefix = "ack"

// numbered returns a copy of body whose ack id is made of run and n, so
// that every request is a distinct notification: a relay deduplicates by
// ack id and device token, as Mattermost's retries repeat both.
func numbered(body []byte, run, n int64) []byte {
	field := []byte(`"ack_id":"` + ackPrefix)
	at := bytes.Index(body, field)
	if at < 0 {
		return body
	}
	at += len(field)
	out := bytes.Clone(body)
	putDigits(out[at:at+11], run%1e11)
	putDigits(out[at+11:at+23], n%1e12)
	return out
}

// ackID is the ack id numbered gives the n-th notification of run.
func ackID(run, n int64) string {
	b := make([]byte, len(ackPrefix)+23)
	copy(b, ackPrefix)
	putDigits(b[len(ackPrefix):len(ackPrefix)+11], run%1e11)
	putDigits(b[len(ackPrefix)+11:], n%1e12)
	return string(b)
}

// putDigits writes v in decimal over all of dst, zero-padded on the left
// (without fmt: the load generator shares the machine it measures).
func putDigits(dst []byte, v int64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
}

// Run drives the load and measures it. At the end of the run's duration,
// requests in flight are waited for and counted (though the report's
// Elapsed stays the duration), so that every notification the relay
// accepted is in the report; only ctx ending cuts them off.
func Run(ctx context.Context, opt Options) (Report, error) {
	if err := opt.validate(); err != nil {
		return Report{}, err
	}
	bodies, dead := bodies(4096, opt.Mix, opt.APNsPlatform, opt.FCMPlatform)
	client, err := newClient(opt.URL, opt.Concurrency)
	if err != nil {
		return Report{}, err
	}
	defer client.close()
	defer context.AfterFunc(ctx, client.close)() // cut off what is in flight

	var rep Report
	lat := make([][]time.Duration, opt.Concurrency)
	accepted := make([][]int64, opt.Concurrency) // request numbers, with KeepAcceptedIDs
	cpu0, _ := processCPU(opt.PID)
	reads0, writes0, ioErr := processSyscalls(opt.PID)
	start := time.Now()
	t := newTickets(opt, start)
	stopWatch := watch(opt.Progress, opt.PID, &t.next, start)
	var wg sync.WaitGroup
	for w := range opt.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i, t0, ok := t.take(ctx)
				if !ok {
					return
				}
				k := int(i) % len(bodies)
				status, code, err := client.post(numbered(bodies[k], start.UnixMilli(), i))
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
					if !dead[k] {
						atomic.AddInt64(&rep.LiveOK, 1)
						if opt.KeepAcceptedIDs {
							accepted[w] = append(accepted[w], i)
						}
					} else {
						atomic.AddInt64(&rep.Dead, 1)
					}
				case status == wire.StatusRemove:
					atomic.AddInt64(&rep.Remove, 1)
					if dead[k] {
						atomic.AddInt64(&rep.Dead, 1)
						atomic.AddInt64(&rep.DeadRemove, 1)
					}
				default:
					atomic.AddInt64(&rep.Fail, 1)
					if dead[k] {
						atomic.AddInt64(&rep.Dead, 1)
					}
				}
				lat[w] = append(lat[w], d)
			}
		}()
	}
	wg.Wait()
	rep.Elapsed = t.elapsed(start)
	rep.RSS = stopWatch()
	if cpu1, err := processCPU(opt.PID); err == nil && opt.PID != 0 {
		rep.CPU = cpu1 - cpu0
		rep.PeakRSS, _ = peakRSS(opt.PID)
		if reads1, writes1, err := processSyscalls(opt.PID); err == nil && ioErr == nil {
			rep.Reads, rep.Writes = reads1-reads0, writes1-writes0
		}
	}
	rep.setLatencies(slices.Concat(lat...))
	if opt.KeepAcceptedIDs {
		rep.AcceptedIDs = make([]string, 0, rep.LiveOK)
		for _, numbers := range accepted {
			for _, i := range numbers {
				rep.AcceptedIDs = append(rep.AcceptedIDs, ackID(start.UnixMilli(), i))
			}
		}
	}
	return rep, nil
}

// validate checks that opt bounds a run that can start.
func (opt Options) validate() error {
	switch {
	case opt.Requests <= 0 && opt.Duration <= 0:
		return errors.New("loadgen: set a request count (-n) or a duration (-d)")
	case opt.Concurrency <= 0:
		return errors.New("loadgen: concurrency (-c) must be positive")
	case opt.Rate < 0 || math.IsNaN(opt.Rate) || math.IsInf(opt.Rate, 0):
		return fmt.Errorf("loadgen: rate (-rate) must be 0 or a positive number of requests per second, got %g", opt.Rate)
	}
	return nil
}

// tickets hands out request numbers, from 1, until the run's bounds are
// reached; in an open-loop run, each at the time it is due.
type tickets struct {
	next     atomic.Int64
	max      int64     // 0: no count bound
	until    time.Time // zero: no time bound
	start    time.Time
	interval time.Duration // between two requests due; 0: closed loop
}

func newTickets(opt Options, start time.Time) *tickets {
	t := &tickets{max: int64(opt.Requests), start: start}
	if opt.Duration > 0 {
		t.until = start.Add(opt.Duration)
	}
	if opt.Rate > 0 {
		t.interval = time.Duration(float64(time.Second) / opt.Rate)
	}
	return t
}

// take returns the number of the next request to send and the time its
// latency counts from, or false once the run is over or ctx ended. In an
// open loop it waits until the request is due, which is then that time.
func (t *tickets) take(ctx context.Context) (int64, time.Time, bool) {
	if ctx.Err() != nil || !t.until.IsZero() && !time.Now().Before(t.until) {
		return 0, time.Time{}, false
	}
	i := t.next.Add(1)
	if t.max != 0 && i > t.max {
		return 0, time.Time{}, false
	}
	if t.interval == 0 {
		return i, time.Now(), true
	}
	due := t.start.Add(time.Duration(i-1) * t.interval)
	if !t.until.IsZero() && !due.Before(t.until) {
		return 0, time.Time{}, false
	}
	if wait := time.Until(due); wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return 0, time.Time{}, false
		case <-timer.C:
		}
	}
	return i, due, true
}

// elapsed is how long the run has been sending since start: at most its
// duration, when it has one.
func (t *tickets) elapsed(start time.Time) time.Duration {
	d := time.Since(start)
	if !t.until.IsZero() {
		d = min(d, t.until.Sub(start))
	}
	return d
}

// watch, every second until stopped, samples pid's RSS (when pid is not
// 0) and prints the count, rate and RSS to w (when not nil). stop takes a
// last sample and returns the samples.
func watch(w io.Writer, pid int, done *atomic.Int64, start time.Time) (stop func() []int64) {
	if w == nil && pid == 0 {
		return func() []int64 { return nil }
	}
	var samples []int64
	sample := func() string {
		if pid == 0 {
			return ""
		}
		rss, err := currentRSS(pid)
		if err != nil {
			return ""
		}
		samples = append(samples, rss)
		return "  rss " + megabytes(rss)
	}
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last, lastAt := int64(0), start
		for {
			select {
			case <-quit:
				sample()
				if w != nil {
					fmt.Fprintln(w)
				}
				return
			case now := <-t.C:
				rss := sample()
				if w != nil {
					n := done.Load()
					fmt.Fprintf(w, "\r%6.0fs  %9d sent  %7.0f/s now%s", now.Sub(start).Seconds(), n, float64(n-last)/now.Sub(lastAt).Seconds(), rss)
					last, lastAt = n, now
				}
			}
		}
	}()
	return func() []int64 { close(quit); <-finished; return samples }
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
