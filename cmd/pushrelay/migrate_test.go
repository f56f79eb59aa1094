package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay"
)

func TestMigrateAndCheckTheOldConfig(t *testing.T) {
	dir := t.TempDir()
	creds, err := sandbox.WriteCredentials(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, "config.json")
	err = os.WriteFile(old, fmt.Appendf(nil, `{"ListenAddress": ":8066", "EnableMetrics": true,
  "ApplePushSettings": [{"Type": "apple_rn", "ApplePushTopic": "com.mattermost.rn", "AppleAuthKeyFile": %q, "AppleAuthKeyID": %q, "AppleTeamID": %q}],
  "AndroidPushSettings": [{"Type": "android_rn", "ServiceFileLocation": %q, "AndroidApiKey": "legacy-key-never-printed"}]}`,
		creds.APNsKeyFile, creds.KeyID, creds.TeamID, creds.ServiceAccountFile), 0o600)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderr   string
		yamlOnly bool // stdout must be the YAML and nothing else
	}{
		{name: "migrate prints YAML", args: []string{"migrate", old}, code: 0, stdout: "platform: apple_rn", stderr: "ApplePushSettings[0] -> apps[0]", yamlOnly: true},
		{name: "check takes the old file", args: []string{"check", "--config", old}, code: 0, stdout: "is valid: 2 app(s), policy id_only"},
		{name: "migrate needs a file", args: []string{"migrate"}, code: 1, stderr: "which file? pushrelay migrate FILE.json"},
		{name: "migrate names the JSON key", args: []string{"migrate", writeTemp(t, `{"ListenAddress": 8066}`)}, code: 1, stderr: "ListenAddress: expected a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tt.args, &out, &errOut)
			if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errOut.String(), tt.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errOut.String())
			}
			if strings.Contains(out.String()+errOut.String(), "legacy-key-never-printed") {
				t.Error("the AndroidApiKey was printed")
			}
			if tt.yamlOnly {
				if _, err := relay.ParseConfig(out.Bytes(), nil); err != nil {
					t.Errorf("stdout is not a valid config: %v\n%s", err, out.String())
				}
			}
		})
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
