package relay_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

// natsNode is an external JetStream on a loopback port that a test can stop
// and start again, same port, same store.
type natsNode struct {
	t    *testing.T
	opts server.Options
	ns   *server.Server
}

func newNATSNode(t *testing.T) *natsNode {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	n := &natsNode{t: t, opts: server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, DisableJetStreamBanner: true}}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

func (n *natsNode) start() {
	o := n.opts
	ns, err := server.NewServer(&o)
	if err != nil {
		n.t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("nats-server not ready")
	}
	n.ns = ns
}

func (n *natsNode) stop() {
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
		n.ns = nil
	}
}

// readyz returns /readyz's status code and problems.
func readyz(t *testing.T, h *harness) (int, []string) {
	t.Helper()
	resp, err := http.Get(h.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body struct {
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("/readyz: %v: %s", err, raw)
	}
	return resp.StatusCode, body.Problems
}

// The external JetStream goes away while Apple is down: pushes are
// answered FAIL saying the spool is unavailable (after a short wait for the
// first, at once for the next), counted by reason, and /readyz fails with
// the reason. When JetStream is back, the relay is ready again by itself.
// (That what was kept is delivered once is the spool's tests' part.)
func TestSpoolUnavailableAnswersFailAndUnready(t *testing.T) {
	node := newNATSNode(t)
	h := start(t, "{}", fmt.Sprintf("spool: {nats_url: %q}", node.url()))
	h.apple.Fail(sandbox.Fault{Status: 503})
	pushN(t, h, "apple_rn", 3) // kept, answered OK
	if !metric(t, h, `pushrelay_spool_errors_total{reason="unavailable"} 0`) {
		t.Error("pushrelay_spool_errors_total is not exported from the start")
	}

	node.stop()
	for i := range 5 {
		m := mmMessage("apple_rn", fmt.Sprint("tok-lost-", i))
		m.AckId = fmt.Sprint("ack-lost-", i)
		code, answer := h.push(m)
		if code != 200 || answer["status"] != "FAIL" || !strings.Contains(answer["error"], "spool is unavailable") ||
			!strings.Contains(answer["error"], "spool.nats_url") {
			t.Fatalf("push %d without JetStream: HTTP %d %v", i, code, answer)
		}
	}
	if !metric(t, h, `pushrelay_spool_errors_total{reason="unavailable"} 5`) {
		t.Error(`pushrelay_spool_errors_total{reason="unavailable"} does not count the 5 refusals`)
	}
	code, problems := readyz(t, h)
	if code != http.StatusServiceUnavailable || len(problems) == 0 || !strings.Contains(strings.Join(problems, "\n"), "spool is unavailable") {
		t.Fatalf("/readyz without JetStream: HTTP %d %q", code, problems)
	}

	node.start()
	waitFor(t, "/readyz passing again", 30*time.Second, func() bool { code, _ := readyz(t, h); return code == http.StatusOK })

	// One error line for the outage, not one per push; one line for its end.
	logs := h.logs.String()
	if n := strings.Count(logs, `"msg":"spool: refusing new entries"`); n != 1 {
		t.Errorf("%d lines say the spool refuses entries, want 1 (rate-limited)", n)
	}
	if !strings.Contains(logs, `"msg":"spool: taking entries again"`) {
		t.Error("no line says the spool takes entries again")
	}
	if strings.Contains(logs, "tok-lost-") {
		t.Error("a device token is in the log")
	}
}

// spool.dir fills up while Apple is down: the push that finds it full is
// answered FAIL at once, naming spool.dir and its free space; /readyz fails
// with the reason and the refusal is counted. When Apple is back the spool
// drains, the relay is ready again by itself, and every notification it
// answered OK is delivered once.
func TestSpoolDiskFullAnswersFailAndUnready(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a 1 MiB tmpfs: %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { // registered first: runs after the relay's Shutdown
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	t.Setenv("PUSHRELAY_SPOOL_DIR", dir)
	h := start(t, "{}")
	h.apple.Fail(sandbox.Fault{Status: 503})

	var kept []string
	for i := 0; ; i++ {
		m := mmMessage("apple_rn", fmt.Sprint("tok-", i))
		m.AckId = fmt.Sprint("ack-", i)
		code, answer := h.push(m)
		if code != 200 {
			t.Fatalf("push %d: HTTP %d %v", i, code, answer)
		}
		if answer["status"] == "OK" {
			kept = append(kept, m.AckId)
			if i > 20000 {
				t.Fatal("a 1 MiB spool.dir never filled")
			}
			continue
		}
		if e := answer["error"]; answer["status"] != "FAIL" || !strings.Contains(e, "spool.dir is full") ||
			!strings.Contains(e, dir) || !strings.Contains(e, "free") {
			t.Fatalf("push %d on a full spool.dir: %v", i, answer)
		}
		break
	}
	t.Logf("%d notifications kept before spool.dir was full", len(kept))
	if !metric(t, h, `pushrelay_spool_errors_total{reason="disk_full"} 1`) {
		t.Error(`pushrelay_spool_errors_total{reason="disk_full"} does not count the refusal`)
	}
	code, problems := readyz(t, h)
	if code != http.StatusServiceUnavailable || !strings.Contains(strings.Join(problems, "\n"), "spool.dir is full") {
		t.Fatalf("/readyz on a full spool.dir: HTTP %d %q", code, problems)
	}

	h.apple.Fail(sandbox.Fault{})
	waitFor(t, "/readyz passing again", 60*time.Second, func() bool { code, _ := readyz(t, h); return code == http.StatusOK })
	waitFor(t, "the kept notifications delivered", 60*time.Second, func() bool {
		return len(deliveredAcks(t, okAPNs(h))) >= len(kept)
	})
	got := deliveredAcks(t, okAPNs(h))
	for _, ack := range kept {
		if got[ack] != 1 {
			t.Errorf("%s delivered %d times, want once", ack, got[ack])
		}
	}
}
