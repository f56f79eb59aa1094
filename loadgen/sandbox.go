package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// Rig is a local measuring rig: APNs and FCM look-alikes, and a relay
// process configured against them, all on loopback.
type Rig struct {
	apple  *sandbox.APNs
	google *sandbox.FCM
	dir    string
	cmd    *exec.Cmd
	// URL is the relay's send_push URL; PID its process; MetricsURL its
	// metrics listener, which also serves /debug/pprof/.
	URL        string
	PID        int
	MetricsURL string
}

// StartRig starts the look-alikes (refusing the load generator's dead
// tokens) and runs `relayBinary serve` against them with the default
// policy; extraYAML is appended to its configuration.
func StartRig(relayBinary, extraYAML string) (*Rig, error) {
	r := &Rig{apple: sandbox.NewAPNs(), google: sandbox.NewFCM()}
	r.apple.SetRecording(false)
	r.google.SetRecording(false)
	for i := range DeadTokens {
		r.apple.KillToken(DeadToken(true, i), "Unregistered")
		r.google.KillToken(DeadToken(false, i), "UNREGISTERED")
	}
	var err error
	if r.dir, err = os.MkdirTemp("", "pushrelay-bench-"); err != nil {
		r.Close()
		return nil, err
	}
	creds, err := sandbox.WriteCredentials(r.dir, nil, r.google)
	if err != nil {
		r.Close()
		return nil, err
	}
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
metrics: {listen: %q, pprof: true}
spool: {dir: %q}
egress: {ca_file: %q}
apps:
  - platform: apple_rn
    apns: {topic: com.mattermost.rn, auth_key_file: %q, key_id: %s, team_id: %s, endpoint: %q}
  - platform: android_rn
    fcm: {service_account_file: %q, endpoint: %q}
%s
`, addr, metricsAddr, filepath.Join(r.dir, "spool"), creds.CAFile, creds.APNsKeyFile, creds.KeyID, creds.TeamID, r.apple.URL(),
		creds.ServiceAccountFile, r.google.URL(), extraYAML)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		r.Close()
		return nil, err
	}
	r.cmd = exec.Command(relayBinary, "serve", "--config", config)
	r.cmd.Stderr = nil // the relay's own logs are not the measurement
	if err := r.cmd.Start(); err != nil {
		r.Close()
		return nil, fmt.Errorf("start the relay: %w", err)
	}
	r.PID, r.URL = r.cmd.Process.Pid, "http://"+addr+"/api/v1/send_push"
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return r, nil
		}
	}
	r.Close()
	return nil, fmt.Errorf("the relay did not listen on %s within 15s (try: %s check --config %s)", addr, relayBinary, config)
}

// Close stops the relay and the look-alikes and removes the rig's files.
func (r *Rig) Close() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			r.cmd.Process.Kill()
		}
	}
	r.apple.Close()
	r.google.Close()
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

// Direct measures the ceiling of the rig: a bare HTTP/2 client posting
// APNs payloads straight to the APNs look-alike, with the same
// concurrency and bounds as opt, no relay in between.
func (r *Rig) Direct(ctx context.Context, opt Options) (Report, error) {
	if opt.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opt.Duration)
		defer cancel()
	}
	client := r.apple.Client()
	bodies := make([][]byte, 256)
	tokens := make([]string, len(bodies))
	for i := range bodies {
		n := wire.Notification{Type: wire.TypeMessage, IsIDLoaded: true, Message: "You've received a new message.",
			ServerID: "bench-server-0001", DeviceID: fmt.Sprintf("%064x", i), ChannelID: "4xp9bkzfn3ym8j1wq6ce5tda7r", Signature: "sig"}
		bodies[i], _ = json.Marshal(apns.Build(&n, "com.mattermost.rn").Payload)
		tokens[i] = n.DeviceID
	}
	var next atomic.Int64
	var mu sync.Mutex
	var all []time.Duration
	var failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range opt.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for ctx.Err() == nil {
				i := next.Add(1)
				if opt.Requests > 0 && i > int64(opt.Requests) {
					break
				}
				k := int(i) % len(bodies)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.apple.URL()+"/3/device/"+tokens[k], bytes.NewReader(bodies[k]))
				req.Header.Set("apns-topic", "com.mattermost.rn")
				req.Header.Set("apns-push-type", "alert")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() != nil {
						break
					}
					failed.Add(1)
					continue
				}
				resp.Body.Close()
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	rep := Report{Elapsed: time.Since(start), OK: int64(len(all)), TransportErrors: failed.Load()}
	rep.setLatencies(all)
	return rep, nil
}

// Profile records the relay's CPU profile for d into path, from its
// /debug/pprof/profile.
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
