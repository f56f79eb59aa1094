package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay"
)

func TestVersionAndUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "pushrelay ") {
		t.Errorf("version: exit %d, %q", code, out.String())
	}
	if code := run(context.Background(), []string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) ||
		!strings.Contains(errOut.String(), usage) {
		t.Errorf("unknown command: exit %d, %q", code, errOut.String())
	}
	// The usage names every command, and goes to stdout when asked for.
	out.Reset()
	if code := run(context.Background(), []string{"--help"}, &out, &errOut); code != 0 || out.String() != usage {
		t.Errorf("--help: exit %d, %q", code, out.String())
	}
	for _, cmd := range []string{"serve", "demo", "check", "policy explain", "migrate FILE.json", "bench", "version"} {
		if !strings.Contains(usage, "pushrelay "+cmd) {
			t.Errorf("the usage does not name %q", cmd)
		}
	}
	errOut.Reset()
	if code := run(context.Background(), nil, &out, &errOut); code != 2 || errOut.String() != usage {
		t.Errorf("no command: exit %d, %q", code, errOut.String())
	}
}

func TestCheckNamesTheBadKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pushrelay.yaml")
	os.WriteFile(path, []byte(`
apps:
  - platform: android_rn
    fcm: {service_account_file: /nonexistent/firebase.json}
`), 0o600)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"check", "--config", path}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "apps[0].fcm.service_account_file") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
}

// freePort finds a loopback port for a config that cannot say ":0" and
// still tell the test where it listens.
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// served is `pushrelay serve` running in-process against an APNs look-alike.
type served struct {
	t      *testing.T
	addr   string
	path   string
	apple  *sandbox.APNs
	stderr *syncBuffer
	stop   context.CancelFunc
	done   chan int
	base   string // the config without its policy line
}

func serveWith(t *testing.T, policy string) *served {
	t.Helper()
	apple := sandbox.NewAPNs()
	t.Cleanup(apple.Close)
	dir := t.TempDir()
	creds, err := sandbox.WriteCredentials(dir, apple, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &served{t: t, addr: freePort(t), path: filepath.Join(dir, "pushrelay.yaml"), apple: apple, stderr: &syncBuffer{}, done: make(chan int, 1)}
	s.base = fmt.Sprintf(`
listen: %s
metrics: {listen: ""}
spool: {dir: %q}
egress: {ca_file: %q}
apps:
  - platform: apple_rn
    apns: {topic: com.mattermost.rn, auth_key_file: %q, key_id: %s, team_id: %s, endpoint: %q}
`, s.addr, filepath.Join(dir, "spool"), creds.CAFile, creds.APNsKeyFile, creds.KeyID, creds.TeamID, apple.URL())
	s.writePolicy(policy)
	var ctx context.Context
	ctx, s.stop = context.WithCancel(context.Background())
	go func() { s.done <- run(ctx, []string{"serve", "--config", s.path}, io.Discard, s.stderr) }()
	t.Cleanup(func() {
		s.stop()
		<-s.done
	})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return s
		}
	}
	t.Fatalf("relay never listened: %s", s.stderr.String())
	return nil
}

func (s *served) writePolicy(policy string) {
	if err := os.WriteFile(s.path, []byte(s.base+"policy: "+policy+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// push sends a message with content and returns the answer and the payload that reached APNs.
func (s *served) push() (string, string) {
	s.t.Helper()
	resp, err := http.Post("http://"+s.addr+"/api/v1/send_push", "",
		strings.NewReader(`{"platform":"apple_rn","server_id":"s","device_id":"tok","type":"message","message":"secret plans"}`))
	if err != nil {
		s.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	reqs := s.apple.Requests()
	if len(reqs) == 0 {
		return string(body), ""
	}
	return string(body), string(reqs[len(reqs)-1].Body)
}

// waitLog waits for a log line containing want.
func (s *served) waitLog(want string) {
	s.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(s.stderr.String(), want) {
			return
		}
	}
	s.t.Fatalf("no log line with %q:\n%s", want, s.stderr.String())
}

func TestServeAnswersAndDrainsOnSignal(t *testing.T) {
	s := serveWith(t, "{mode: id_only}")
	answer, payload := s.push()
	if !strings.Contains(answer, `"status":"OK"`) || s.apple.Delivered() != 1 || strings.Contains(payload, "secret plans") {
		t.Errorf("send_push: %s, delivered %d, payload %s", answer, s.apple.Delivered(), payload)
	}
	s.stop() // what SIGTERM does
	select {
	case code := <-s.done:
		if code != 0 {
			t.Errorf("serve exited %d: %s", code, s.stderr.String())
		}
		s.done <- code // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	if strings.Contains(s.stderr.String(), `"tok"`) || strings.Contains(s.stderr.String(), "secret plans") {
		t.Errorf("the log holds the device token or content: %s", s.stderr.String())
	}
}

func TestSIGTERMFinishesInFlightSends(t *testing.T) {
	s := serveWith(t, "{}")
	s.apple.Fail(sandbox.Fault{Delay: 700 * time.Millisecond, Count: 1})
	answered := make(chan string)
	go func() { answer, _ := s.push(); answered <- answer }()
	for len(s.apple.Requests()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	s.stop() // SIGTERM while Apple is still answering
	if answer := <-answered; !strings.Contains(answer, `"status":"OK"`) {
		t.Errorf("the in-flight push got %q", answer)
	}
	if code := <-s.done; code != 0 {
		t.Errorf("serve exited %d: %s", code, s.stderr.String())
	}
	s.done <- 0
	if s.apple.Delivered() != 1 {
		t.Errorf("delivered %d", s.apple.Delivered())
	}
}

func TestSIGHUPReloadsPolicyAndRefusesABadOne(t *testing.T) {
	s := serveWith(t, "{mode: full}")
	if _, payload := s.push(); !strings.Contains(payload, "secret plans") {
		t.Fatalf("full policy: %s", payload)
	}

	s.writePolicy("{mode: everything}")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	s.waitLog("reload refused")
	if !strings.Contains(s.stderr.String(), `policy.mode: unknown mode \"everything\"`) {
		t.Errorf("the refusal does not name the key: %s", s.stderr.String())
	}
	if _, payload := s.push(); !strings.Contains(payload, "secret plans") {
		t.Errorf("a refused reload changed the policy: %s", payload)
	}

	s.writePolicy("{mode: id_only}")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	s.waitLog("configuration reloaded")
	if _, payload := s.push(); strings.Contains(payload, "secret plans") || !strings.Contains(payload, `"id_loaded":true`) {
		t.Errorf("after reload to id_only: %s", payload)
	}
}

func TestPolicyExplain(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pushrelay.yaml")
	os.WriteFile(cfg, []byte(`
policy: {mode: generic}
apps: [{platform: android_rn, fcm: {service_account_file: /not/read/by/explain.json}}]
`), 0o600)
	in := filepath.Join(dir, "n.json")
	os.WriteFile(in, []byte(`{"platform":"android_rn","server_id":"s","device_id":"d","type":"message","message":"secret plans","sender_name":"alice"}`), 0o600)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"policy", "explain", "--config", cfg, in}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "removed: message") || strings.Contains(out.String(), "secret plans") ||
		!strings.Contains(out.String(), `message.data.sender_name`) {
		t.Errorf("exit %d\nstdout %s\nstderr %s", code, out.String(), errOut.String())
	}
	os.WriteFile(in, []byte(`{"badge":"x"}`), 0o600)
	if code := run(context.Background(), []string{"policy", "explain", "--config", cfg, in}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "not a send_push notification") {
		t.Errorf("bad input: exit %d, %s", code, errOut.String())
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestTuneRuntime(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	for _, tt := range []struct {
		name      string
		gogc      string // "" leaves GOGC unset
		pprof     bool
		wantFloor bool // GOGC is 50 or more, the heap goal at least heapFloor
		wantGC    int  // GOGC, without the floor
		wantRate  bool // heap profiles are still sampled
	}{
		{"defaults", "", false, true, 0, false},
		{"GOGC set by the operator", "200", false, false, 200, false},
		{"pprof served", "", true, true, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOGC", tt.gogc)
			debug.SetGCPercent(200) // as the runtime would read the operator's GOGC at start
			runtime.MemProfileRate = 512 << 10
			cfg := relay.Defaults()
			cfg.Metrics.Pprof = tt.pprof
			runtime.GC() // a floor is set from the last collection's live heap
			floor := tuneRuntime(&cfg)
			if (floor != nil) != tt.wantFloor {
				t.Fatalf("heap floor started: %v, want %v", floor != nil, tt.wantFloor)
			}
			if floor != nil {
				defer floor.Stop()
				s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/heap/goal:bytes"}}
				metrics.Read(s)
				if gogc, goal := s[0].Value.Uint64(), s[1].Value.Uint64(); gogc < 50 || goal < heapFloor*99/100 {
					t.Errorf("GOGC %d, heap goal %d: want GOGC 50 or more and a goal of about %d or more", gogc, goal, heapFloor)
				}
			} else if got := debug.SetGCPercent(100); got != tt.wantGC {
				t.Errorf("GOGC %d, want %d", got, tt.wantGC)
			}
			if sampled := runtime.MemProfileRate > 0; sampled != tt.wantRate {
				t.Errorf("MemProfileRate %d", runtime.MemProfileRate)
			}
		})
	}
}
