package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// relayBinary builds pushrelay once per test run, so that a test can
// kill -9 a real relay process.
func relayBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pushrelay-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "pushrelay")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// process is one relay process serving a config file.
type process struct {
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
}

func startProcess(t *testing.T, config, addr string) *process {
	t.Helper()
	p := &process{addr: addr, logs: &syncBuffer{}}
	p.cmd = exec.Command(relayBinary(t), "serve", "--config", config)
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return p
		}
	}
	t.Fatalf("relay process never listened:\n%s", p.logs.String())
	return nil
}

func (p *process) push(t *testing.T, ack string) {
	t.Helper()
	body := fmt.Sprintf(`{"ack_id":%q,"platform":"apple_rn","server_id":"s","device_id":"tok-%s","type":"message","message":"m"}`, ack, ack)
	resp, err := http.Post("http://"+p.addr+"/api/v1/send_push", "", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer map[string]string
	json.NewDecoder(resp.Body).Decode(&answer)
	if resp.StatusCode != 200 || answer["status"] != "OK" {
		t.Fatalf("push %s: HTTP %d %v", ack, resp.StatusCode, answer)
	}
}

// delivered counts, per ack_id, the pushes APNs accepted.
func delivered(apple *sandbox.APNs) map[string]int {
	out := map[string]int{}
	for _, r := range apple.Requests() {
		if r.Status == 200 {
			var m map[string]any
			json.Unmarshal(r.Body, &m)
			out[fmt.Sprint(m["ack_id"])]++
		}
	}
	return out
}

func relayConfig(t *testing.T, apple *sandbox.APNs, creds sandbox.Credentials, addr, spoolYAML string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pushrelay.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`
listen: %s
metrics: {listen: ""}
%s
delivery: {timeout: 1s, backoff: {initial: 100ms, max: 500ms}}
egress: {ca_file: %q}
apps:
  - platform: apple_rn
    apns: {topic: com.mattermost.rn, auth_key_file: %q, key_id: %s, team_id: %s, endpoint: %q}
`, addr, spoolYAML, creds.CAFile, creds.APNsKeyFile, creds.KeyID, creds.TeamID, apple.URL())), 0o600)
	return path
}

func waitAllOnce(t *testing.T, apple *sandbox.APNs, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if len(delivered(apple)) == n {
			break
		}
	}
	time.Sleep(time.Second) // room for a duplicate to show
	got := delivered(apple)
	if len(got) != n {
		t.Fatalf("%d of %d notifications delivered", len(got), n)
	}
	for ack, times := range got {
		if times != 1 {
			t.Errorf("%s delivered %d times", ack, times)
		}
	}
}

func TestKill9LosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills relay processes")
	}
	apple := sandbox.NewAPNs()
	defer apple.Close()
	creds, err := sandbox.WriteCredentials(t.TempDir(), apple, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	config := relayConfig(t, apple, creds, addr, fmt.Sprintf("spool: {dir: %q}", filepath.Join(t.TempDir(), "spool")))

	apple.Fail(sandbox.Fault{Status: 503})
	first := startProcess(t, config, addr)
	const n = 20
	for i := 0; i < n; i++ {
		first.push(t, fmt.Sprintf("ack-%02d", i))
	}
	first.cmd.Process.Kill() // kill -9: no drain, no flush
	first.cmd.Wait()

	apple.Recover()
	startProcess(t, config, addr)
	waitAllOnce(t, apple, n)
}

func TestTwoRelaysShareOneJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills relay processes")
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	apple := sandbox.NewAPNs()
	defer apple.Close()
	creds, err := sandbox.WriteCredentials(t.TempDir(), apple, nil)
	if err != nil {
		t.Fatal(err)
	}
	spoolYAML := fmt.Sprintf("spool: {nats_url: %q}", ns.ClientURL())
	addrA, addrB := freePort(t), freePort(t)
	apple.Fail(sandbox.Fault{Status: 503})
	a := startProcess(t, relayConfig(t, apple, creds, addrA, spoolYAML), addrA)
	b := startProcess(t, relayConfig(t, apple, creds, addrB, spoolYAML), addrB)
	const n = 20
	for i := 0; i < n; i++ {
		p := a
		if i%2 == 1 {
			p = b
		}
		p.push(t, fmt.Sprintf("ack-%02d", i))
	}
	a.cmd.Process.Kill() // one relay crashes; the other drains the shared spool
	a.cmd.Wait()
	apple.Recover()
	waitAllOnce(t, apple, n)
}
