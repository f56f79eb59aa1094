package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// Rig is a local measuring rig: APNs and FCM look-alikes in a process of
// their own (see LookalikesEnv), and a relay process configured against
// them, all on loopback. The load generator runs in the caller's process.
type Rig struct {
	dir        string
	lookalikes lookalikes
	fakes      *exec.Cmd      // the look-alikes' process
	fakesIn    io.WriteCloser // closing it ends that process
	fakesErr   bytes.Buffer   // its standard error, for a failed start
	binary     string         // the relay's executable
	config     string         // the relay's configuration file
	addr       string         // the relay's listen address
	cmd        *exec.Cmd      // the relay's process
	exited     chan struct{}  // closed once cmd has ended (and was waited for)
	// URL is the relay's send_push URL; PID its process; MetricsURL its
	// metrics listener, which also serves /debug/pprof/ when the rig was
	// started for profiling.
	URL        string
	PID        int
	MetricsURL string
}

// StartRig starts the look-alikes (refusing the load generator's dead
// tokens) and runs `relayBinary serve` against them with the default
// policy; extraYAML is appended to its configuration. relayBinary also
// serves the look-alikes, in a process of their own. With profiling the
// relay serves /debug/pprof/ (for Profile), as it does not by default.
func StartRig(relayBinary string, profiling bool, extraYAML string) (*Rig, error) {
	r := &Rig{}
	var err error
	if r.dir, err = os.MkdirTemp("", "pushrelay-bench-"); err != nil {
		return nil, err
	}
	if err := r.startLookalikes(relayBinary); err != nil {
		r.Close()
		return nil, err
	}
	creds := r.lookalikes.Creds
	addr, err := freeAddr()
	if err != nil {
		r.Close()
		return nil, err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		r.Close()
		return nil, err
	}
	r.MetricsURL = "http://" + metricsAddr
	config := filepath.Join(r.dir, "pushrelay.yaml")
	yaml := fmt.Sprintf(`listen: %s
metrics: {listen: %q, pprof: %t}
spool: {dir: %q}
egress: {ca_file: %q}
apps:
  - platform: apple_rn
    apns: {topic: com.mattermost.rn, auth_key_file: %q, key_id: %s, team_id: %s, endpoint: %q}
  - platform: android_rn
    fcm: {service_account_file: %q, endpoint: %q}
%s
`, addr, metricsAddr, profiling, filepath.Join(r.dir, "spool"), creds.CAFile, creds.APNsKeyFile, creds.KeyID, creds.TeamID, r.lookalikes.Apple,
		creds.ServiceAccountFile, r.lookalikes.Google, extraYAML)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		r.Close()
		return nil, err
	}
	r.binary, r.config, r.addr = relayBinary, config, addr
	r.URL = "http://" + addr + "/api/v1/send_push"
	if err := r.startRelay(context.Background(), 15*time.Second); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// startRelay starts the relay's process on the rig's configuration and
// waits, at most limit, until it listens.
func (r *Rig) startRelay(ctx context.Context, limit time.Duration) error {
	cmd := exec.Command(r.binary, "serve", "--config", r.config)
	cmd.Stderr = nil // the relay's own logs are not the measurement
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the relay: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	r.cmd, r.exited, r.PID = cmd, exited, cmd.Process.Pid
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(limit)
	for {
		if c, err := net.Dial("tcp", r.addr); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("the relay exited as it started: %s (try: %s check --config %s)", cmd.ProcessState, r.binary, r.config)
		case <-deadline:
			return fmt.Errorf("the relay did not listen on %s within %s (try: %s check --config %s)", r.addr, limit, r.binary, r.config)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Restarted is how Rig.Restart went; its durations count from the signal.
type Restarted struct {
	Signal         string // "SIGKILL" or "SIGTERM"
	OldPID, NewPID int
	// Exit is how the old process ended, as its ProcessState tells it
	// ("signal: killed", "exit status 0", ...).
	Exit string
	// Exited is when the old process was gone, Listening when the new
	// one accepted a connection, Ready when its /readyz answered 200.
	Exited, Listening, Ready time.Duration
}

// restartLimit bounds each wait of a Restart: for the old process to
// exit (then it is killed), for the new one to listen, and to be ready.
const restartLimit = 2 * time.Minute

// Restart stops the relay with sig, syscall.SIGKILL or syscall.SIGTERM,
// waits for its exit, and starts it again on the same configuration and
// spool; it returns once the new process listens and its /readyz answers
// 200. From then on the rig's PID is the new process's.
func (r *Rig) Restart(ctx context.Context, sig os.Signal) (Restarted, error) {
	res := Restarted{OldPID: r.PID}
	switch sig {
	case syscall.SIGKILL:
		res.Signal = "SIGKILL"
	case syscall.SIGTERM:
		res.Signal = "SIGTERM"
	default:
		return res, fmt.Errorf("loadgen: restart the relay with SIGKILL or SIGTERM, not %v", sig)
	}
	start := time.Now()
	if err := r.cmd.Process.Signal(sig); err != nil {
		return res, fmt.Errorf("%s the relay (pid %d): %w", res.Signal, r.PID, err)
	}
	select {
	case <-r.exited:
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(restartLimit):
		r.cmd.Process.Kill()
		<-r.exited
		return res, fmt.Errorf("the relay (pid %d) had not exited %s after %s: killed", r.PID, restartLimit, res.Signal)
	}
	res.Exited, res.Exit = time.Since(start), r.cmd.ProcessState.String()
	if err := r.startRelay(ctx, restartLimit); err != nil {
		return res, fmt.Errorf("after %s: %w", res.Signal, err)
	}
	res.NewPID, res.Listening = r.PID, time.Since(start)
	if err := r.waitReady(ctx, restartLimit); err != nil {
		return res, fmt.Errorf("after %s: %w", res.Signal, err)
	}
	res.Ready = time.Since(start)
	return res, nil
}

// waitReady waits, at most limit, until the relay's /readyz answers 200.
func (r *Rig) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	url := "http://" + r.addr + "/readyz"
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status + " " + strings.TrimSpace(string(body))
		}
		select {
		case <-r.exited:
			return fmt.Errorf("the relay exited before it was ready: %s", r.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("the relay's /readyz did not answer 200 within %s: %s", limit, last)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// startLookalikes starts the look-alikes' process and reads where they
// listen.
func (r *Rig) startLookalikes(binary string) error {
	r.fakes = exec.Command(binary)
	r.fakes.Env = append(os.Environ(), LookalikesEnv+"="+filepath.Join(r.dir, "credentials"))
	r.fakes.Stderr = &r.fakesErr
	in, err := r.fakes.StdinPipe()
	if err != nil {
		return err
	}
	out, err := r.fakes.StdoutPipe()
	if err != nil {
		return err
	}
	r.fakesIn = in
	if err := r.fakes.Start(); err != nil {
		return fmt.Errorf("start the look-alikes: %w", err)
	}
	if r.lookalikes, err = readLookalikes(out); err != nil {
		r.fakes.Process.Kill()
		r.fakes.Wait()
		return fmt.Errorf("%w %s", err, strings.TrimSpace(r.fakesErr.String()))
	}
	return nil
}

// Close stops the relay and the look-alikes and removes the rig's files.
func (r *Rig) Close() {
	stop(r.cmd, r.exited, func(p *os.Process) { p.Signal(os.Interrupt) })
	stop(r.fakes, nil, func(*os.Process) { r.fakesIn.Close() })
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

// stop asks a started process to end and waits for it, at most 10
// seconds before killing it. exited, when not nil, is closed once the
// process was waited for; when nil, stop waits for it itself.
func stop(cmd *exec.Cmd, exited chan struct{}, ask func(*os.Process)) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	ask(cmd.Process)
	done := exited
	if done == nil {
		done = make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// control makes a request to the look-alikes' control listener and
// returns its answer's body.
func (r *Rig) control(ctx context.Context, method, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, r.lookalikes.Control+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("look-alikes %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if err != nil {
		return "", fmt.Errorf("look-alikes %s %s: %w", method, path, err)
	}
	return string(body), nil
}

// SetUpstream makes both look-alikes answer every push latency late and
// refuse the fraction faults of them, picked at random, with a retryable
// 503 (APNs ServiceUnavailable, FCM UNAVAILABLE). Zero for both: answer
// at once, refuse nothing. Direct faces the same upstream as the relay.
func (r *Rig) SetUpstream(latency time.Duration, faults float64) error {
	if latency < 0 || faults < 0 || faults >= 1 {
		return fmt.Errorf("loadgen: upstream latency %v and fault rate %v: want a latency of 0 or more and a rate from 0 to below 1", latency, faults)
	}
	q := url.Values{"latency": {latency.String()}, "faults": {strconv.FormatFloat(faults, 'g', -1, 64)}}
	_, err := r.control(context.Background(), http.MethodPost, "/upstream?"+q.Encode())
	return err
}

// Delivered returns how many pushes the look-alikes answered 200 since the
// rig started or, once Direct or ResetDelivered ran, since their end: what
// the relay delivered.
func (r *Rig) Delivered(ctx context.Context) (int64, error) {
	body, err := r.control(ctx, http.MethodGet, "/delivered")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(body, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("look-alikes GET /delivered: %q is not a count", body)
	}
	return n, nil
}

// Direct measures the ceiling of the rig: a bare HTTP/2 client posting
// APNs payloads straight to the APNs look-alike, with the same
// concurrency, rate and bounds as opt, no relay in between. Its pushes are not
// counted in Delivered.
func (r *Rig) Direct(ctx context.Context, opt Options) (Report, error) {
	client, err := directClient(r.lookalikes.Creds.CAFile)
	if err != nil {
		return Report{}, err
	}
	defer client.CloseIdleConnections()
	bodies := make([][]byte, 256)
	tokens := make([]string, len(bodies))
	for i := range bodies {
		n := wire.Notification{Type: wire.TypeMessage, IsIDLoaded: true, Message: "You've received a new message.",
			ServerID: "bench-server-0001", DeviceID: fmt.Sprintf("%064x", i), ChannelID: "4xp9bkzfn3ym8j1wq6ce5tda7r", Signature: "sig"}
		bodies[i], _ = json.Marshal(apns.Build(&n, "com.mattermost.rn").Payload)
		tokens[i] = n.DeviceID
	}
	var mu sync.Mutex
	var all []time.Duration
	var failed, refused atomic.Int64
	start := time.Now()
	t := newTickets(opt, start)
	stopWatch := watch(opt.Progress, 0, &t.next, start) // a progress line: this phase is as long as the relay's
	var wg sync.WaitGroup
	for range opt.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for {
				i, t0, ok := t.take(ctx)
				if !ok {
					break
				}
				k := int(i) % len(bodies)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.lookalikes.Apple+"/3/device/"+tokens[k], bytes.NewReader(bodies[k]))
				req.Header.Set("apns-topic", "com.mattermost.rn")
				req.Header.Set("apns-push-type", "alert")
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() != nil {
						break
					}
					failed.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					refused.Add(1)
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	stopWatch()
	rep := Report{Elapsed: t.elapsed(start), HTTPErrors: refused.Load(), TransportErrors: failed.Load()}
	rep.OK = int64(len(all)) - rep.HTTPErrors
	rep.setLatencies(all)
	// What the relay delivers is counted from here.
	if err := r.ResetDelivered(context.WithoutCancel(ctx)); err != nil {
		return Report{}, err
	}
	return rep, nil
}

// ResetDelivered makes Delivered count from now on.
func (r *Rig) ResetDelivered(ctx context.Context) error {
	_, err := r.control(ctx, http.MethodPost, "/reset")
	return err
}

// ResetDeliveredByID is ResetDelivered, and makes the look-alikes count
// deliveries by ack id too (DeliveredIDs) until the next ResetDelivered.
func (r *Rig) ResetDeliveredByID(ctx context.Context) error {
	_, err := r.control(ctx, http.MethodPost, "/reset?ids=on")
	return err
}

// DeliveredIDs returns how many times the look-alikes answered 200 to
// each ack id since ResetDeliveredByID.
func (r *Rig) DeliveredIDs(ctx context.Context) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.lookalikes.Control+"/delivered-ids", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("look-alikes GET /delivered-ids: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("look-alikes GET /delivered-ids: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	ids, err := readIDRanges(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("look-alikes GET /delivered-ids: %w", err)
	}
	return ids, nil
}

// directClient is the direct run's client: net/http's, speaking HTTP/2 to
// servers whose certificate is in caFile, as a client of an httptest
// server does.
func directClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}, nil
}

// SpoolMessages returns how many notifications the relay keeps for
// redelivery: its pushrelay_spool_messages gauge.
func (r *Rig) SpoolMessages(ctx context.Context) (int64, error) {
	const metric = "pushrelay_spool_messages"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.MetricsURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("read the relay's spool depth: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("read the relay's spool depth: %s/metrics answered %s", r.MetricsURL, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), metric+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("read the relay's spool depth: %s is %q", metric, v)
			}
			return int64(n), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read the relay's spool depth: %w", err)
	}
	return 0, fmt.Errorf("read the relay's spool depth: no %s in %s/metrics", metric, r.MetricsURL)
}

// Drain waits, at most limit, until the relay's spool is empty: every
// notification it accepted was delivered or given up on. While it waits,
// it shows the spool's depth on progress (when not nil).
func (r *Rig) Drain(ctx context.Context, limit time.Duration, progress io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	printed := false
	endLine := func() {
		if printed {
			fmt.Fprintln(progress)
		}
	}
	left := int64(-1)
	for {
		n, err := r.SpoolMessages(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			endLine()
			return err
		case err == nil:
			left = n
		}
		if left == 0 {
			endLine()
			return nil
		}
		if err == nil && progress != nil {
			printed = true
			fmt.Fprintf(progress, "\rwaiting for the relay's spool to empty: %6d left after %3.0fs", left, time.Since(start).Seconds())
		}
		select {
		case <-ctx.Done():
			endLine()
			return fmt.Errorf("the relay's spool still held %d notifications after %s", left, time.Since(start).Round(time.Second))
		case <-tick.C:
		}
	}
}

// Accounting compares the notifications the relay accepted with the ones
// that reached the look-alikes.
type Accounting struct {
	// Accepted is how many notifications for live device tokens the relay
	// answered OK (Report.LiveOK); Delivered how many pushes the
	// look-alikes answered 200 (Rig.Delivered).
	Accepted, Delivered int64
}

// Lost is how many accepted notifications were not delivered.
func (a Accounting) Lost() int64 { return max(0, a.Accepted-a.Delivered) }

// Duplicates is how many more pushes were delivered than accepted.
func (a Accounting) Duplicates() int64 { return max(0, a.Delivered-a.Accepted) }

// String is the accounting for a person.
func (a Accounting) String() string {
	return fmt.Sprintf("accepted OK for live tokens %d, delivered upstream %d: lost %d, duplicates %d",
		a.Accepted, a.Delivered, a.Lost(), a.Duplicates())
}

// Profile records the relay's CPU profile for d into path, from its
// /debug/pprof/profile (a rig started for profiling serves it).
func (r *Rig) Profile(ctx context.Context, d time.Duration, path string) error {
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", r.MetricsURL, max(1, int(d.Seconds())))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("relay profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("relay profile: %s answered %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("relay profile: %w", err)
	}
	return f.Close()
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
