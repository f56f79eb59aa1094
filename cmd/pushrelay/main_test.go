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
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

func TestVersionAndUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "pushrelay ") {
		t.Errorf("version: exit %d, %q", code, out.String())
	}
	if code := run(context.Background(), []string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, errOut.String())
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

func TestServeAnswersAndDrainsOnSignal(t *testing.T) {
	apple, google := sandbox.NewAPNs(), sandbox.NewFCM()
	defer apple.Close()
	defer google.Close()
	dir := t.TempDir()
	creds, err := sandbox.WriteCredentials(dir, apple, google)
	if err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	path := filepath.Join(dir, "pushrelay.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`
listen: %s
metrics: {listen: ""}
egress: {ca_file: %q}
apps:
  - platform: apple_rn
    apns: {topic: com.mattermost.rn, auth_key_file: %q, key_id: %s, team_id: %s, endpoint: %q}
`, addr, creds.CAFile, creds.APNsKeyFile, creds.KeyID, creds.TeamID, apple.URL())), 0o600)

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int)
	var stderr bytes.Buffer
	go func() { done <- run(ctx, []string{"serve", "--config", path}, io.Discard, &stderr) }()

	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err = http.Post("http://"+addr+"/api/v1/send_push", "",
			strings.NewReader(`{"platform":"apple_rn","server_id":"s","device_id":"tok","type":"message","message":"hi"}`))
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("relay never answered: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"status":"OK"`) || apple.Delivered() != 1 {
		t.Errorf("send_push: %s, delivered %d", body, apple.Delivered())
	}

	stop() // what SIGTERM does
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	if strings.Contains(stderr.String(), "tok") && !strings.Contains(stderr.String(), "token") {
		t.Errorf("the log names the device token: %s", stderr.String())
	}
}
