package migrate_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/migrate"
	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/wiring"
	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// oldSecrets are the values in testdata/migrate-old-config.json (and the
// proxy URL of migrateEnv) that must never reach the converted YAML.
var oldSecrets = []string{"p12-password-DO-NOT-LEAK", "AAAA-legacy-server-key-DO-NOT-LEAK", "AIza-another-legacy-key-DO-NOT-LEAK", "alice", "s3cret"}

func migrateEnv(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestMigrateGolden(t *testing.T) {
	old, err := os.ReadFile("testdata/migrate-old-config.json")
	if err != nil {
		t.Fatal(err)
	}
	out, mapped, err := migrate.Migrate(old, migrateEnv(map[string]string{"HTTPS_PROXY": "http://alice:s3cret@proxy.corp.example:3128"}))
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/migrate-old-config.golden.yaml"
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/pushrelay/internal/migrate -run TestMigrateGolden -update to write it)", err)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("the converted YAML differs from %s (rerun with -update if the change is intended):\n%s", golden, out)
	}

	// The legacy-key-only entry is left to fill: fill it, as the admin would.
	filled := bytes.Replace(out, []byte(`service_account_file: ""`), []byte(`service_account_file: /etc/pushrelay/android.json`), 1)
	cfg, err := relay.ParseConfig(filled, nil)
	if err != nil {
		t.Fatalf("the converted YAML does not parse: %v", err)
	}
	var platforms []string
	for _, a := range cfg.Apps {
		platforms = append(platforms, a.Platform)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"listen", cfg.Listen, ":8066"},
		{"apps", strings.Join(platforms, ","), "apple,apple_rn,apple_rnbeta,android_rn,android"},
		{"cert auth", cfg.Apps[0].APNs.CertFile, "/etc/mattermost-push-proxy/apple-push-cert.pem"},
		{"cert password file", cfg.Apps[0].APNs.CertPasswordFile, "/etc/mattermost-push-proxy/apple.cert-password"},
		{"token auth", cfg.Apps[1].APNs.KeyID + " " + cfg.Apps[1].APNs.TeamID, "ABC123DEFG TEAM123456"},
		{"token auth wins over a certificate", cfg.Apps[2].APNs.CertFile, ""},
		{"development", cfg.Apps[2].APNs.Development, true},
		{"topic", cfg.Apps[1].APNs.Topic, "com.example.mattermost"},
		{"service account", cfg.Apps[3].FCM.ServiceAccountFile, "/etc/mattermost-push-proxy/firebase-service-account.json"},
		{"rate", cfg.Limits.RatePerClient, 300.0},
		{"burst", cfg.Limits.Burst, 300},
		{"metrics", cfg.Metrics.Listen, ":9066"},
		{"legacy names", cfg.Metrics.LegacyNames, true},
		{"timeout capped", cfg.Delivery.Timeout, 10 * time.Second},
		{"log format", cfg.Log.Format, "text"},
		{"policy", string(cfg.Policy.Mode), "id_only"},
		{"egress proxy left to HTTPS_PROXY", cfg.Egress.Proxy, ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	notes := strings.Join(mapped, "\n")
	for _, want := range []string{"ListenAddress -> listen", "AndroidPushSettings[1] -> apps[4] (android, fcm): FILL its service account", "FILL before use (pushrelay check lists them): apps[4].fcm.service_account_file", "ApplePushSettings[0].ApplePushCertPassword",
		"not carried over (unknown keys): MetricsPort, ApplePushSettings[2].ApplePushVoipTopic"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	for _, secret := range oldSecrets {
		if bytes.Contains(out, []byte(secret)) || strings.Contains(notes, secret) {
			t.Errorf("a secret of the old config reached the output: %q", secret)
		}
	}
}

// oldJSON is a minimal old config with one app per kind; extra keys are
// added (or replaced) by the caller.
func oldJSON(t *testing.T, extra map[string]any) []byte {
	t.Helper()
	c := map[string]any{
		"ListenAddress": ":8066",
		"ApplePushSettings": []map[string]any{{"Type": "apple_rn", "ApplePushTopic": "com.mattermost.rn",
			"AppleAuthKeyFile": "AuthKey.p8", "AppleAuthKeyID": "ABC123DEFG", "AppleTeamID": "TEAM123456"}},
		"AndroidPushSettings": []map[string]any{{"Type": "android_rn", "ServiceFileLocation": "firebase.json"}},
	}
	for k, v := range extra {
		c[k] = v
	}
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestMigrateMapsEachKey(t *testing.T) {
	tests := []struct {
		name  string
		extra map[string]any
		env   map[string]string
		check func(c *relay.Config) bool
		has   []string // in the YAML
		hasNo []string
	}{
		{name: "defaults", extra: nil,
			check: func(c *relay.Config) bool {
				return c.Listen == ":8066" && c.Metrics.Listen == "" && c.Metrics.LegacyNames && c.Limits.RatePerClient == 0 &&
					c.Delivery.Timeout == 10*time.Second && c.Log.Format == "json" && c.Policy.Mode == "id_only" && len(c.Apps) == 2
			},
			hasNo: []string{"egress:", "auth:"}},
		{name: "metrics on", extra: map[string]any{"EnableMetrics": true},
			check: func(c *relay.Config) bool { return c.Metrics.Listen == ":9066" && c.Metrics.LegacyNames }},
		{name: "a short send timeout is kept", extra: map[string]any{"SendTimeoutSec": 4},
			check: func(c *relay.Config) bool { return c.Delivery.Timeout == 4*time.Second }, hasNo: []string{"capped"}},
		{name: "throttle without a proxy in front", extra: map[string]any{"ThrottlePerSec": 50},
			check: func(c *relay.Config) bool { return c.Limits.RatePerClient == 50 && c.Limits.Burst == 50 },
			hasNo: []string{"trusted_proxies"}},
		{name: "another vary header", extra: map[string]any{"ThrottleVaryByHeader": "X-Real-IP"},
			check: func(c *relay.Config) bool { return len(c.Auth.TrustedProxies) == 0 },
			has:   []string{"ThrottleVaryByHeader X-Real-IP: pushrelay limits by client address only"}},
		{name: "json logs to a file", extra: map[string]any{"LogFormat": "json", "EnableFileLog": true, "LogFileLocation": "/var/log/pp.log"},
			check: func(c *relay.Config) bool { return c.Log.Format == "json" },
			has:   []string{"journalctl -u pushrelay", "/var/log/pp.log is no longer written"}},
		{name: "HTTP_PROXY only", env: map[string]string{"http_proxy": "proxy.corp:3128"},
			check: func(c *relay.Config) bool { return c.Egress.Proxy == "" },
			has:   []string{"http_proxy was http://proxy.corp:3128", "does not read HTTP_PROXY"}},
		{name: "HTTPS_PROXY wins, without its password", env: map[string]string{"HTTPS_PROXY": "https://bob:hunter2@px:8443", "HTTP_PROXY": "http://other:1"},
			check: func(c *relay.Config) bool { return c.Egress.Proxy == "" },
			has:   []string{"HTTPS_PROXY was https://px:8443 (its credentials not shown)"}, hasNo: []string{"hunter2", "bob", "other:1"}},
		{name: "an incomplete token key falls back to the certificate",
			extra: map[string]any{"ApplePushSettings": []map[string]any{{"Type": "apple", "ApplePushTopic": "t", "AppleAuthKeyID": "K", "ApplePushCertPrivate": "c.pem"}}},
			check: func(c *relay.Config) bool { return c.Apps[0].APNs.CertFile == "c.pem" && c.Apps[0].APNs.KeyID == "" }},
		{name: "odd names are quoted",
			extra: map[string]any{"ListenAddress": "0.0.0.0:8066", "AndroidPushSettings": []map[string]any{{"Type": "yes", "ServiceFileLocation": "/my files/sa #1.json"}}},
			check: func(c *relay.Config) bool {
				return c.Listen == "0.0.0.0:8066" && c.Apps[1].Platform == "yes" && c.Apps[1].FCM.ServiceAccountFile == "/my files/sa #1.json"
			}},
		{name: "keys match case-insensitively, as the old proxy read them", extra: map[string]any{"enablemetrics": true, "sendtimeoutsec": 3},
			check: func(c *relay.Config) bool { return c.Metrics.Listen == ":9066" && c.Delivery.Timeout == 3*time.Second },
			hasNo: []string{"not know"}},
		{name: "unknown keys are listed, newlines and all", extra: map[string]any{"Foo\nbar: 1": 1},
			check: func(c *relay.Config) bool { return true },
			has:   []string{"not carried over: Foo bar: 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := migrate.Migrate(oldJSON(t, tt.extra), migrateEnv(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := relay.ParseConfig(out, nil)
			if err != nil {
				t.Fatalf("the converted YAML does not parse: %v\n%s", err, out)
			}
			if !tt.check(cfg) {
				t.Errorf("unexpected config %+v from:\n%s", cfg, out)
			}
			for _, s := range tt.has {
				if !bytes.Contains(out, []byte(s)) {
					t.Errorf("the YAML lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.hasNo {
				if bytes.Contains(out, []byte(s)) {
					t.Errorf("the YAML holds %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestMigrateErrorsNameTheJSONKey(t *testing.T) {
	apple := func(fields map[string]any) map[string]any {
		a := map[string]any{"Type": "apple_rn", "ApplePushTopic": "com.mattermost.rn",
			"AppleAuthKeyFile": "AuthKey.p8", "AppleAuthKeyID": "ABC123DEFG", "AppleTeamID": "TEAM123456"}
		for k, v := range fields {
			a[k] = v
		}
		return a
	}
	tests := []struct {
		name string
		json []byte
		want string
	}{
		{"not JSON", []byte(`{"ListenAddress": ":8066",`), "not valid JSON"},
		{"not an object", []byte(`[1, 2]`), "expected a JSON object"},
		{"wrong type", oldJSON(t, map[string]any{"ThrottlePerSec": "300"}), "ThrottlePerSec: expected a whole number, got JSON string"},
		{"wrong type in an entry", oldJSON(t, map[string]any{"ApplePushSettings": []any{apple(nil), apple(map[string]any{"Type": "b", "ApplePushUseDevelopment": "yes"})}}),
			"ApplePushSettings[1].ApplePushUseDevelopment: expected true or false"},
		{"settings not a list", oldJSON(t, map[string]any{"AndroidPushSettings": map[string]any{"Type": "x"}}), "AndroidPushSettings: expected a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := migrate.Migrate(tt.json, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), `"k"`) {
				t.Errorf("the error quotes a key: %v", err)
			}
		})
	}
}

func TestIsOldProxyConfig(t *testing.T) {
	tests := []struct {
		name string
		data string
		want bool
	}{
		{"the old config", `{"ListenAddress": ":8066", "ApplePushSettings": []}`, true},
		{"only android", "\n  {\"AndroidPushSettings\": [{\"Type\": \"android_rn\"}]}", true},
		{"lower-case keys", `{"listenaddress": ":8066"}`, true},
		{"pushrelay YAML", "listen: \":8066\"\napps: []\n", false},
		{"pushrelay YAML as a flow mapping", `{listen: ":8066", apps: []}`, false},
		{"pushrelay config as JSON", `{"listen": ":8066", "apps": []}`, false},
		{"broken JSON naming an old key", `{"ListenAddress": `, true},
		{"broken JSON", `{"listen": `, false},
		{"empty", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := migrate.IsOldProxyConfig([]byte(tt.data)); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestServeTheOldConfigDirectly loads mattermost-push-proxy's config.json
// as `pushrelay serve --config config.json` does and relays through it. The
// old format has no endpoint override, so the test points the apps at the
// look-alikes after loading, as it does with listen addresses and the spool.
func TestServeTheOldConfigDirectly(t *testing.T) {
	apple, google := sandbox.NewAPNs(), sandbox.NewFCM()
	t.Cleanup(apple.Close)
	t.Cleanup(google.Close)
	dir := t.TempDir()
	creds, err := sandbox.WriteCredentials(dir, apple, google)
	if err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf(`{
  "ListenAddress": ":8066", "ThrottlePerSec": 300, "ThrottleMemoryStoreSize": 50000, "ThrottleVaryByHeader": "",
  "EnableMetrics": true, "SendTimeoutSec": 30, "RetryTimeoutSec": 8, "EnableConsoleLog": true, "LogFormat": "json",
  "ApplePushSettings": [{"Type": "apple_rn", "ApplePushTopic": %q, "AppleAuthKeyFile": %q, "AppleAuthKeyID": %q, "AppleTeamID": %q,
                         "ApplePushUseDevelopment": false, "ApplePushCertPrivate": "", "ApplePushCertPassword": ""}],
  "AndroidPushSettings": [{"Type": "android_rn", "AndroidApiKey": "", "ServiceFileLocation": %q}]
}`, sandbox.DefaultTopic, creds.APNsKeyFile, creds.KeyID, creds.TeamID, creds.ServiceAccountFile)
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := relay.LoadConfig(path, migrate.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Migrated) == 0 || !cfg.Metrics.LegacyNames || cfg.Apps[0].APNs == nil || cfg.Apps[1].FCM == nil {
		t.Fatalf("not converted as expected: %+v", cfg)
	}
	cfg.Listen, cfg.Metrics.Listen, cfg.Spool.Dir, cfg.Egress.CAFile = "127.0.0.1:0", "127.0.0.1:0", filepath.Join(dir, "spool"), creds.CAFile
	cfg.Apps[0].APNs.Endpoint, cfg.Apps[1].FCM.Endpoint = apple.URL(), google.URL()

	logs := &syncBuffer{}
	srv, err := relay.NewServer(cfg, wiring.Providers, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })

	for _, platform := range []string{"apple_rn", "android_rn"} {
		if code, answer := push(t, "http://"+srv.Addr(), platform, "tok-"+platform); code != 200 || answer["status"] != "OK" {
			t.Fatalf("%s: HTTP %d %v", platform, code, answer)
		}
	}
	if len(apple.Requests()) != 1 || len(google.Requests()) != 1 {
		t.Fatalf("APNs got %d, FCM got %d pushes, want 1 each", len(apple.Requests()), len(google.Requests()))
	}
	if bytes.Contains(apple.Requests()[0].Body, []byte("merger")) {
		t.Error("the converted config is not id_only")
	}
	if !strings.Contains(logs.String(), "converted from a mattermost-push-proxy config.json") || !strings.Contains(logs.String(), "ListenAddress -> listen") {
		t.Errorf("startup does not log the conversion:\n%s", logs)
	}
	metrics := get(t, "http://"+srv.MetricsAddr()+"/metrics")
	for _, want := range []string{`service_success_total{platform="apple",type="message"} 1`, `service_success_total{platform="android",type="message"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestLoadConfigNamesTheOldKey(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"broken JSON", `{"ListenAddress": ":8066",`, "(a mattermost-push-proxy config.json): not valid JSON"},
		{"an entry without a topic", `{"ApplePushSettings": [{"Type": "apple_rn", "ApplePushCertPrivate": "c.pem"}]}`, "ApplePushSettings[0].ApplePushTopic (apps[0].apns.topic): required"},
		{"a credential to fill", `{"AndroidPushSettings": [{"Type": "android"}]}`, "(a mattermost-push-proxy config.json; pushrelay migrate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			if err := os.WriteFile(path, []byte(tt.json), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := relay.LoadConfig(path, migrate.Legacy)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestMigrateTheShippedSample converts a file like the sample config that
// mattermost-push-proxy ships (config/mattermost-push-proxy.sample.json:
// every credential empty). The conversion must not stop: it prints every
// app, each empty credential marked FILL with the key to fill, and the
// notes list them; loading it then lists every one of them at once.
func TestMigrateTheShippedSample(t *testing.T) {
	const sample = "testdata/mattermost-push-proxy.sample.json"
	old, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	out, notes, err := migrate.Migrate(old, nil)
	if err != nil {
		t.Fatalf("migrate refused the old proxy's own sample: %v", err)
	}
	fill := []string{"apps[0].apns.auth_key_file", "apps[0].apns.key_id", "apps[0].apns.team_id",
		"apps[1].apns.auth_key_file", "apps[1].apns.key_id", "apps[1].apns.team_id",
		"apps[2].fcm.service_account_file", "apps[3].fcm.service_account_file"}
	header := strings.SplitN(string(out), "\n\n", 2)[0]
	for _, key := range fill {
		if !strings.Contains(header, key) {
			t.Errorf("the header's FILL list lacks %s:\n%s", key, header)
		}
		if !strings.Contains(strings.Join(notes, "\n"), key) {
			t.Errorf("the notes lack %s: %q", key, notes)
		}
	}
	if got := strings.Count(string(out), `""  # FILL: `); got != len(fill) {
		t.Errorf("%d empty values marked FILL, want %d:\n%s", got, len(fill), out)
	}
	for _, want := range []string{"platform: apple\n", "topic: com.mattermost.Mattermost", "platform: apple_rn\n",
		"topic: com.mattermost.react.native", "platform: android\n", "platform: android_rn\n",
		"not carried over: LogLevel", "licensed (Professional or Enterprise)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the YAML lacks %q:\n%s", want, out)
		}
	}

	// As a file: check lists every key to fill, in the order of the file.
	path := filepath.Join(t.TempDir(), "pushrelay.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = relay.LoadConfig(path, migrate.Legacy)
	if err == nil {
		t.Fatal("the sample, credentials still empty, loaded")
	}
	msg, last := err.Error(), -1
	for _, key := range []string{"apps[0].apns.auth_key_file", "apps[1].apns.auth_key_file", "apps[2].fcm.service_account_file", "apps[3].fcm.service_account_file"} {
		i := strings.Index(msg, key)
		if i < 0 || i < last {
			t.Errorf("%s missing or out of file order in:\n%s", key, msg)
		}
		last = i
	}

	// Served as it is, the old file's keys are named.
	_, err = relay.LoadConfig(sample, migrate.Legacy)
	if err == nil || !strings.Contains(err.Error(), "ApplePushSettings[0].AppleAuthKeyFile (apps[0].apns.auth_key_file)") ||
		!strings.Contains(err.Error(), "AndroidPushSettings[1].ServiceFileLocation (apps[3].fcm.service_account_file)") {
		t.Errorf("loading the sample: %v", err)
	}
}

// TestMigrateKeepsGoing: what the old file lacks or gets wrong becomes a
// comment in the YAML, never a refusal to print it.
func TestMigrateKeepsGoing(t *testing.T) {
	apple := func(fields map[string]any) map[string]any {
		a := map[string]any{"Type": "apple_rn", "ApplePushTopic": "com.mattermost.rn",
			"AppleAuthKeyFile": "AuthKey.p8", "AppleAuthKeyID": "ABC123DEFG", "AppleTeamID": "TEAM123456"}
		for k, v := range fields {
			a[k] = v
		}
		return a
	}
	tests := []struct {
		name string
		json []byte
		has  []string
	}{
		{"no Type", oldJSON(t, map[string]any{"AndroidPushSettings": []map[string]any{{"ServiceFileLocation": "f.json"}}}),
			[]string{`- platform: ""  # FILL: AndroidPushSettings[0].Type is empty`}},
		{"no topic", oldJSON(t, map[string]any{"ApplePushSettings": []any{apple(map[string]any{"ApplePushTopic": ""})}}),
			[]string{`topic: ""  # FILL: ApplePushSettings[0].ApplePushTopic is empty`, "Still to fill in (each marked FILL below): apps[0].apns.topic"}},
		{"a Type twice", oldJSON(t, map[string]any{"AndroidPushSettings": []map[string]any{{"Type": "apple_rn", "ServiceFileLocation": "f.json"}}}),
			[]string{`AndroidPushSettings[0] is not carried over: its Type "apple_rn" is already configured by ApplePushSettings[0]`}},
		{"bad listen address", oldJSON(t, map[string]any{"ListenAddress": "8066"}), []string{`listen: ":8066"  # ListenAddress "8066" is not host:port`}},
		{"nothing to serve", oldJSON(t, map[string]any{"ApplePushSettings": []any{}, "AndroidPushSettings": []any{}}),
			[]string{"FILL apps: the old file has no ApplePushSettings or AndroidPushSettings entry", "apps: []"}},
		{"only a legacy API key", oldJSON(t, map[string]any{"AndroidPushSettings": []map[string]any{{"Type": "android", "AndroidApiKey": "AIza-k"}}}),
			[]string{"only AndroidApiKey for Google's legacy FCM API", `service_account_file: ""  # FILL`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := migrate.Migrate(tt.json, nil)
			if err != nil {
				t.Fatalf("migrate refused: %v", err)
			}
			for _, s := range tt.has {
				if !strings.Contains(string(out), s) {
					t.Errorf("the YAML lacks %q:\n%s", s, out)
				}
			}
			if strings.Contains(string(out), "AIza-k") {
				t.Error("the legacy API key reached the YAML")
			}
		})
	}
}

// TestMigrateFileMakesPathsAbsolute: the old proxy opened relative paths
// from its install directory (the parent of config/); the YAML names them
// absolutely, so that it works wherever it is saved.
func TestMigrateFileMakesPathsAbsolute(t *testing.T) {
	old := []byte(`{"ApplePushSettings": [{"Type": "apple_rn", "ApplePushTopic": "t", "AppleAuthKeyFile": "config/AuthKey.p8",
  "AppleAuthKeyID": "ABC123DEFG", "AppleTeamID": "TEAM123456"}],
  "AndroidPushSettings": [{"Type": "android_rn", "ServiceFileLocation": "/abs/sa.json"}]}`)
	out, _, err := migrate.MigrateFile("/opt/mattermost-push-proxy/config/mattermost-push-proxy.json", old, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := relay.ParseConfig(out, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := cfg.Apps[0].APNs.AuthKeyFile; got != "/opt/mattermost-push-proxy/config/AuthKey.p8" {
		t.Errorf("auth_key_file = %q", got)
	}
	if got := cfg.Apps[1].FCM.ServiceAccountFile; got != "/abs/sa.json" {
		t.Errorf("service_account_file = %q", got)
	}
	if !strings.Contains(string(out), "was relative to the old proxy's working directory, taken as /opt/mattermost-push-proxy") {
		t.Errorf("no comment on the relative path:\n%s", out)
	}
}

// push posts a Mattermost-shaped message notification for platform to the
// relay at base and returns the HTTP status and the answer.
func push(t *testing.T, base, platform, token string) (int, map[string]string) {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"ack_id": "ack-1", "platform": platform, "server_id": "srv-1", "device_id": token, "post_id": "post-1",
		"category": "CAN_REPLY", "message": "the merger closes friday :tada:", "badge": 2, "team_id": "team-1",
		"channel_id": "chan-1", "channel_name": "Board Room", "type": "message", "sender_id": "user-1",
		"sender_name": "alice", "version": "v2", "signature": "jwt.sig",
	})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/send_push", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "Mattermost-Bot/1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer map[string]string
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &answer)
	return resp.StatusCode, answer
}

// get returns the body at url.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// syncBuffer collects log output written from many goroutines.
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
