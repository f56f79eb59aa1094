package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/providers/egress/egresstest"
	"github.com/pushrelay/pushrelay/providers/sandbox"
)

// TestCheckEgress runs `pushrelay check --egress` through a CONNECT proxy:
// exit 0 and a table when every host can be reached, exit 1 and what to
// open when one cannot.
func TestCheckEgress(t *testing.T) {
	apple, google := sandbox.NewAPNs(), sandbox.NewFCM()
	defer apple.Close()
	defer google.Close()
	dir := t.TempDir()
	creds, err := sandbox.WriteCredentials(dir, apple, google)
	if err != nil {
		t.Fatal(err)
	}
	proxy := egresstest.NewHTTP(t, egresstest.Options{User: "relay", Password: "cli-s3cret"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + ln.Addr().String()
	ln.Close()

	for _, tt := range []struct {
		name, apnsEndpoint string
		code               int
		out, errOut        string
	}{
		{"reachable", apple.URL(), 0, "all 2 host(s) can be reached as configured", ""},
		{"APNs port closed", closed, 1, "the proxy could not reach 127.0.0.1:", "1 of 2 host(s) cannot be reached as configured"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pushrelay.yaml")
			os.WriteFile(path, []byte(fmt.Sprintf(`
metrics: {listen: ""}
spool: {dir: %q}
egress: {proxy: %q, source_address: 127.0.0.2, ca_file: %q}
apps:
  - platform: apple_rn
    apns: {topic: %s, auth_key_file: %q, key_id: %s, team_id: %s, endpoint: %q}
  - platform: android_rn
    fcm: {service_account_file: %q, endpoint: %q}
`, filepath.Join(dir, "spool"), proxy.URL(), creds.CAFile, creds.Topic, creds.APNsKeyFile, creds.KeyID, creds.TeamID,
				tt.apnsEndpoint, creds.ServiceAccountFile, google.URL())), 0o600)
			var out, errOut bytes.Buffer
			code := run(context.Background(), []string{"check", "--egress", "--config", path}, &out, &errOut)
			if code != tt.code || !strings.Contains(out.String(), tt.out) || !strings.Contains(errOut.String(), tt.errOut) ||
				!strings.Contains(out.String(), "HOST") {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errOut.String())
			}
			if strings.Contains(out.String()+errOut.String(), "cli-s3cret") {
				t.Error("the proxy password shows")
			}
		})
	}
}
