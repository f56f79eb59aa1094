package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

// pushrelay runs the built binary in dir and returns its exit code, stdout
// and stderr.
func pushrelay(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(relayBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PUSHRELAY_CONFIG=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// TestMigrateTheOldProxysShippedSample runs the binary on a file like
// mattermost-push-proxy's config/mattermost-push-proxy.sample.json, every
// credential empty: migrate prints the YAML with each credential to fill
// and exits 0; check lists them all at once, in file order, and exits 1.
func TestMigrateTheOldProxysShippedSample(t *testing.T) {
	dir := t.TempDir()
	sample, err := filepath.Abs("internal/migrate/testdata/mattermost-push-proxy.sample.json")
	if err != nil {
		t.Fatal(err)
	}
	code, yaml, notes := pushrelay(t, dir, "migrate", sample)
	if code != 0 || !strings.Contains(yaml, "platform: apple_rn") || strings.Count(yaml, `""  # FILL: `) != 8 ||
		!strings.Contains(notes, "FILL before use") {
		t.Fatalf("migrate: exit %d\nstdout:\n%s\nstderr:\n%s", code, yaml, notes)
	}
	if err := os.WriteFile(filepath.Join(dir, "pushrelay.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := pushrelay(t, dir, "check", "--config", "pushrelay.yaml")
	if code != 1 || out != "" || !strings.Contains(errOut, "8 problems:") {
		t.Fatalf("check: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	last := -1
	for _, key := range []string{"apps[0].apns.auth_key_file", "apps[0].apns.key_id", "apps[0].apns.team_id", "apps[1].apns.auth_key_file",
		"apps[1].apns.key_id", "apps[1].apns.team_id", "apps[2].fcm.service_account_file", "apps[3].fcm.service_account_file"} {
		i := strings.Index(errOut, key)
		if i <= last {
			t.Errorf("%s missing or out of order:\n%s", key, errOut)
		}
		last = i
	}
	if strings.Count(errOut, "pushrelay check:") != 1 {
		t.Errorf("the error is printed more than once:\n%s", errOut)
	}
	// The old file itself, as --config: the same, named by its JSON keys.
	code, _, errOut = pushrelay(t, dir, "check", "--config", sample)
	if code != 1 || !strings.Contains(errOut, "AndroidPushSettings[1].ServiceFileLocation (apps[3].fcm.service_account_file)") {
		t.Errorf("check of the old file: exit %d\n%s", code, errOut)
	}
	// Only input that cannot be read fails migrate.
	if code, _, errOut := pushrelay(t, dir, "migrate", filepath.Join(dir, "nonexistent.json")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("migrate of a missing file: exit %d, %s", code, errOut)
	}
}

// validConfig writes a configuration that check accepts, with its
// credentials beside it under relative paths.
func validConfig(t *testing.T, dir string) {
	t.Helper()
	creds, err := sandbox.WriteCredentials(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`apps:
  - platform: apple_rn
    apns: {topic: com.example.mm, auth_key_file: %s, key_id: %s, team_id: %s}
  - platform: android_rn
    fcm: {service_account_file: %s}
`, filepath.Base(creds.APNsKeyFile), creds.KeyID, creds.TeamID, filepath.Base(creds.ServiceAccountFile))
	if err := os.WriteFile(filepath.Join(dir, "my.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPositionalArguments: an argument is used or refused, never ignored;
// relative paths in a config are relative to its file, not to where the
// command runs.
func TestPositionalArguments(t *testing.T) {
	conf := t.TempDir()
	validConfig(t, conf)
	elsewhere := t.TempDir()
	my := filepath.Join(conf, "my.yaml")
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"check", my}, 0, "config " + my + " is valid: 2 app(s), policy id_only", ""},
		{[]string{"check", "--config", my}, 0, "what the phone shows: only ids leave; the app fetches the content from your Mattermost server, which hands it out only with a Professional or Enterprise license", ""},
		{[]string{"check", my, "--config", my}, 1, "", "two configurations"},
		{[]string{"check", my, "other.yaml"}, 1, "", `unexpected argument "other.yaml"`},
		{[]string{"check", "missing.yaml"}, 1, "", "config missing.yaml: open missing.yaml: no such file"},
		{[]string{"check"}, 1, "", "name the configuration with --config FILE or $PUSHRELAY_CONFIG"},
		{[]string{"demo", "now"}, 1, "", `pushrelay demo: unexpected argument "now"`},
		{[]string{"version", "--json"}, 1, "", "flag provided but not defined: -json (pushrelay version --help shows the usage)"},
		{[]string{"migrate", "a.json", "b.json"}, 1, "", `unexpected argument "b.json"`},
		{[]string{"policy", "explain", "--config", my, "a.json", "b.json"}, 1, "", `unexpected argument "b.json"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := pushrelay(t, elsewhere, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.stdout) || !strings.Contains(errOut, tt.stderr) {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if strings.Count(errOut, "pushrelay "+tt.args[0]) > 1+strings.Count(errOut, "--help shows") {
				t.Errorf("the error is printed more than once:\n%s", errOut)
			}
		})
	}
}

// TestCheckListsEveryProblem: one run names every problem, in file order.
func TestCheckListsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(`listen: ":8066"
apps:
  - platform: apple_rn-v2
    apns: {topic: com.example.mm, auth_key_file: AuthKey.p8, key_id: ABC, team_id: TEAM123456}
  - platform: "*"
    upstream: {url: "http://push.example.com"}
delivery: {timeout: 45s}
`), 0o600)
	code, _, errOut := pushrelay(t, dir, "check", "bad.yaml")
	want := []string{`apps[0].platform: "apple_rn-v2" is never routed to`, `apps[0].apns.key_id: "ABC" is not an Apple key id`,
		"apps[1].upstream.url: http:// is refused", "delivery.timeout: must be between 0 and 30s"}
	last := -1
	for _, w := range want {
		i := strings.Index(errOut, w)
		if i <= last {
			t.Errorf("%q missing or out of order", w)
		}
		last = i
	}
	if code != 1 || !strings.Contains(errOut, "4 problems:") {
		t.Errorf("exit %d\n%s", code, errOut)
	}
}

// TestHelp: --help of every command goes to stdout, exits 0 and says what
// the command takes.
func TestHelp(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"migrate", "--help"}, []string{"pushrelay migrate FILE.json", "FILL"}},
		{[]string{"check", "-h"}, []string{"pushrelay check [--config FILE] [--egress]", "-egress", "-config file"}},
		{[]string{"serve", "--help"}, []string{"pushrelay serve [--config FILE]", "SIGHUP"}},
		{[]string{"demo", "--help"}, []string{"pushrelay demo [--keep]", "-keep", "80 columns"}},
		{[]string{"policy", "explain", "--help"}, []string{"pushrelay policy explain [--config FILE] [FILE.json]"}},
		{[]string{"version", "--help"}, []string{"pushrelay version"}},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tt.args, &out, &errOut)
		for _, w := range tt.want {
			if code != 0 || errOut.Len() != 0 || !strings.Contains(out.String(), w) {
				t.Errorf("%v: exit %d, lacks %q\nstdout: %s\nstderr: %s", tt.args, code, w, out.String(), errOut.String())
			}
		}
	}
}

func TestBuildVersion(t *testing.T) {
	info := func(version string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Version: version}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	const rev = "9dfa006aa1bb2cc3dd4ee5ff6"
	tests := []struct {
		name                  string
		version, commit       string
		info                  *debug.BuildInfo
		wantVersion, wantHash string
	}{
		{"stamped with -ldflags", "1.0.0", "abc", info("(devel)", "vcs.revision", rev), "1.0.0", "abc"},
		{"go install @version", "dev", "unknown", info("v1.2.3"), "v1.2.3", "unknown"},
		{"go build in a checkout", "dev", "unknown", info("(devel)", "vcs.revision", rev, "vcs.time", "2026-12-06T19:00:00Z", "vcs.modified", "false"),
			"devel-9dfa006aa1bb", "9dfa006aa1bb 2026-12-06T19:00:00Z"},
		{"a modified checkout", "dev", "unknown", info("(devel)", "vcs.revision", rev, "vcs.time", "2026-12-06T19:00:00Z", "vcs.modified", "true"),
			"devel-9dfa006aa1bb+dirty", "9dfa006aa1bb+dirty 2026-12-06T19:00:00Z"},
		{"nothing recorded", "dev", "unknown", info("(devel)"), "dev", "unknown"},
	}
	for _, tt := range tests {
		v, c := buildVersion(tt.version, tt.commit, tt.info)
		if v != tt.wantVersion || c != tt.wantHash {
			t.Errorf("%s: got %q (%q), want %q (%q)", tt.name, v, c, tt.wantVersion, tt.wantHash)
		}
	}
	// The binary the README's go build makes, in a git checkout, says which
	// commit it is (-buildvcs=auto, Go's default, whatever GOFLAGS says here).
	// Go finds git by a .git directory only: in a git worktree, where .git is
	// a file, it stamps nothing, so there is nothing to check.
	if fi, err := os.Stat("../../.git"); err == nil && fi.IsDir() {
		bin := filepath.Join(t.TempDir(), "pushrelay")
		if out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, ".").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		out, err := exec.Command(bin, "version").Output()
		if err != nil || strings.Contains(string(out), "dev (unknown)") {
			t.Errorf("version of a build from the checkout: %v, %q", err, out)
		}
	}
}

// TestExplainDoesNotWaitOnATerminal: without FILE.json and with nothing
// piped in, explain says what it needs instead of waiting.
func TestExplainDoesNotWaitOnATerminal(t *testing.T) {
	tty, err := os.Open(os.DevNull) // a character device, as a terminal is
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out bytes.Buffer
	err = explainCmd([]string{"--config", "unused.yaml"}, tty, &out)
	if err == nil || !strings.Contains(err.Error(), "no notification: name a FILE.json or pipe one in") {
		t.Errorf("got %v", err)
	}
}

// TestImageBuildLeavesOutTheLookalikes: the container image is built with
// -tags nodemo (deploy/Dockerfile), which must leave the APNs/FCM
// look-alikes, the demo and the load generator out of the binary.
func TestImageBuildLeavesOutTheLookalikes(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "nodemo", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range []string{"/providers/sandbox", "/loadgen", "/demo"} {
		if strings.Contains(string(out), "github.com/pushrelay/pushrelay"+pkg+"\n") {
			t.Errorf("a -tags nodemo build links %s", pkg)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"demo", "--help"}, &stdout, &stderr); code != 0 {
		t.Errorf("demo --help: exit %d", code)
	}
}
