package relay_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

// Two relays share an external JetStream: a dead token found on a
// redelivery, whichever relay made it, is answered REMOVE at once by both.
func TestDeadTokenIsSharedThroughAnExternalSpool(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, DisableJetStreamBanner: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	spoolLine := "spool: {nats_url: " + ns.ClientURL() + "}"
	a, b := start(t, "{}", spoolLine), start(t, "{}", spoolLine)

	const token = "tok-shared-dead"
	for _, h := range []*harness{a, b} {
		h.apple.KillToken(token, "Unregistered") // the same Apple behind both
	}
	a.apple.Fail(sandbox.Fault{Status: 503, Count: 3}) // the first attempt and the two quick ones
	m := mmMessage("apple_rn", token)
	if code, answer := a.push(m); code != 200 || answer["status"] != "OK" {
		t.Fatalf("first push: HTTP %d %v, want OK (spooled)", code, answer)
	}
	for name, h := range map[string]*harness{"the relay that took it": a, "the other relay": b} {
		waitFor(t, "the dead token at "+name, 10*time.Second, func() bool {
			return metric(t, h, "pushrelay_dead_tokens_remembered 1")
		})
		before := len(h.apple.Requests())
		m.AckId = "ack-next"
		if code, answer := h.push(m); code != 200 || answer["status"] != "REMOVE" {
			t.Errorf("%s: next push to the dead token: HTTP %d %v, want REMOVE", name, code, answer)
		}
		if n := len(h.apple.Requests()) - before; n != 0 {
			t.Errorf("%s: the remembered dead token cost %d requests", name, n)
		}
	}
}
