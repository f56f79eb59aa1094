package relay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimalYAML = `
apps:
  - platform: apple_rn
    apns: {topic: com.mattermost.rn, auth_key_file: AuthKey.p8, key_id: ABC123DEFG, team_id: TEAM123456}
  - platform: android_rn
    fcm: {service_account_file: firebase.json}
`

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(minimalYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":8066" || cfg.Metrics.Listen != ":9066" || cfg.Policy.Mode != "id_only" ||
		cfg.Delivery.Timeout != 5*time.Second || cfg.Limits.MaxBodyBytes != 65536 || cfg.Spool.MaxAge != time.Hour {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if len(cfg.Apps) != 2 || cfg.Apps[0].APNs == nil || cfg.Apps[1].FCM == nil {
		t.Errorf("apps: %+v", cfg.Apps)
	}
}

func TestParseConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "lisen: ':1'\n" + minimalYAML, "lisen: unknown key (line 1)"},
		{"unknown nested key", "egress: {proxy: '', sourceaddress: 1.2.3.4}\n" + minimalYAML, "egress.sourceaddress: unknown key"},
		{"unknown key in a list item", minimalYAML + "  - platform: x\n    apns: {topic: t, auth_key_file: k, key_id: i, team_id: m, topik: z}\n", "apps[2].apns.topik: unknown key"},
		{"wrong type", "delivery: {timeout: soon}\n" + minimalYAML, "delivery.timeout:"},
		{"list where a value goes", "listen: [a, b]\n" + minimalYAML, "listen: expected a single value, got a list"},
		{"bad policy mode", "policy: {mode: everything}\n" + minimalYAML, `policy.mode: unknown mode "everything"`},
		{"no apps", "listen: ':8066'\n", "apps: at least one app is required"},
		{"duplicate platform", minimalYAML + "  - platform: apple_rn\n    fcm: {service_account_file: f.json}\n", `apps[2].platform: "apple_rn" is already configured by apps[0]`},
		{"two providers", "apps:\n  - platform: x\n    fcm: {service_account_file: f.json}\n    apns: {topic: t, auth_key_file: k, key_id: i, team_id: m}\n", "apps[0]: needs exactly one of apns, fcm or upstream"},
		{"apns without topic", "apps:\n  - platform: x\n    apns: {auth_key_file: k, key_id: i, team_id: m}\n", "apps[0].apns.topic"},
		{"timeout beyond Mattermost's", "delivery: {timeout: 45s}\n" + minimalYAML, "delivery.timeout: must be between 0 and 30s"},
		{"bad log format", "log: {format: xml}\n" + minimalYAML, `log.format: "xml" is not json or text`},
		{"bad listen", "listen: 8066\n" + minimalYAML, "listen:"},
		{"bad CIDR", "auth: {allowed_networks: [10.0.0/8]}\n" + minimalYAML, `auth.allowed_networks[0]: "10.0.0/8" is not a CIDR`},
		{"negative rate", "limits: {rate_per_client: -1}\n" + minimalYAML, "limits.rate_per_client"},
		{"header buffer per connection too large", "limits: {max_header_bytes: 1048576}\n" + minimalYAML, "limits.max_header_bytes: must be between 4096 and 65536"},
		{"zero header timeout", "limits: {read_header_timeout: 0s}\n" + minimalYAML, "limits.read_header_timeout: must be positive"},
		{"half a TLS pair", "tls: {cert_file: c.pem}\n" + minimalYAML, "tls: cert_file and key_file go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v\nwant an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseConfigEnvOverrides(t *testing.T) {
	env := map[string]string{
		"PUSHRELAY_EGRESS_PROXY":          "http://proxy.corp:3128",
		"PUSHRELAY_DELIVERY_TIMEOUT":      "2s",
		"PUSHRELAY_EGRESS_ALLOWED_HOSTS":  "api.push.apple.com, fcm.googleapis.com",
		"PUSHRELAY_LIMITS_MAX_IN_FLIGHT":  "10",
		"PUSHRELAY_POLICY_MODE":           "generic",
		"PUSHRELAY_APPS_0_APNS_TOPIC":     "ignored: lists of mappings are file-only",
		"PUSHRELAY_LOG_LEVEL":             "debug",
		"PUSHRELAY_POLICY_GENERIC_TEXT":   "New activity",
		"PUSHRELAY_METRICS_LISTEN":        "127.0.0.1:9100",
		"PUSHRELAY_SPOOL_MAX_AGE":         "30m",
		"PUSHRELAY_LIMITS_MAX_BODY_BYTES": "1024",
	}
	cfg, err := ParseConfig([]byte(minimalYAML), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Egress.Proxy != "http://proxy.corp:3128" || cfg.Delivery.Timeout != 2*time.Second ||
		strings.Join(cfg.Egress.AllowedHosts, "|") != "api.push.apple.com|fcm.googleapis.com" ||
		cfg.Limits.MaxInFlight != 10 || cfg.Policy.Mode != "generic" || cfg.Log.Level != "debug" ||
		cfg.Policy.GenericText != "New activity" || cfg.Metrics.Listen != "127.0.0.1:9100" ||
		cfg.Spool.MaxAge != 30*time.Minute || cfg.Limits.MaxBodyBytes != 1024 {
		t.Errorf("overrides not applied: %+v", cfg)
	}

	_, err = ParseConfig([]byte(minimalYAML), func(k string) (string, bool) {
		return "forever", k == "PUSHRELAY_DELIVERY_TIMEOUT"
	})
	if err == nil || !strings.Contains(err.Error(), "delivery.timeout (from PUSHRELAY_DELIVERY_TIMEOUT)") {
		t.Errorf("bad env value: got %v", err)
	}
}

// TestConfigListsEveryProblemInFileOrder: one run of check names every
// problem, in the order of the file, each with its key; configurations that
// can never work are refused.
func TestConfigListsEveryProblemInFileOrder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pushrelay.yaml")
	yaml := `listen: ":8066"
tls: {cert_file: relay.crt}
limits: {max_body_bytes: 0}
lisen: ":1"
apps:
  - platform: apple_rn-v2
    apns: {topic: com.example.mm, auth_key_file: AuthKey.p8, key_id: ABC, team_id: TEAM123456}
  - platform: android_rn
    fcm: {service_account_file: missing.json}
  - platform: "*"
    upstream: {url: "http://push.example.com"}
log: {format: xml}
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	environ := []string{"PUSHRELAY_EGRES_PROXY=http://p:3128", "PUSHRELAY_CONFIG=x", "PUSHRELAY_LOG_LEVEL=info", "HOME=/root"}
	cfg, probs, _ := loadConfig(path, nil, func(k string) (string, bool) { return "", false }, environ)
	if cfg == nil {
		t.Fatal("no configuration to check further")
	}
	probs = append(probs, checkCredentials(cfg, testProviders, probs)...)
	probs.sort()
	want := []string{
		"tls: cert_file and key_file go together",
		"limits.max_body_bytes: must be positive",
		"lisen: unknown key (line 4)",
		`apps[0].platform: "apple_rn-v2" is never routed to`,
		`apps[0].apns.key_id: "ABC" is not an Apple key id`,
		"apps[1].fcm.service_account_file:",
		"apps[2].upstream.url: http:// is refused",
		`log.format: "xml" is not json or text`,
		"PUSHRELAY_EGRES_PROXY: this environment variable names no configuration key",
	}
	if len(probs) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(probs), len(want), probs)
	}
	for i, w := range want {
		if i >= len(probs) || !strings.HasPrefix(probs[i].Err.Error(), w) {
			t.Errorf("problem %d: want %q, in:\n%v", i, w, probs)
		}
	}
	if !strings.Contains(probs.Error(), filepath.Join(dir, "missing.json")) {
		t.Errorf("the service account path is not taken relative to the config file's directory:\n%v", probs)
	}
}

// TestLoadConfigPathsRelativeToTheFile: relative paths in a config file are
// relative to its directory, whatever the working directory.
func TestLoadConfigPathsRelativeToTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pushrelay.yaml")
	if err := os.WriteFile(path, []byte(minimalYAML+"spool: {dir: spool}\nauth: {secrets_file: /etc/pushrelay/secrets}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, probs, _ := loadConfig(path, nil, nil, nil)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	if got := cfg.Apps[0].APNs.AuthKeyFile; got != filepath.Join(dir, "AuthKey.p8") {
		t.Errorf("auth_key_file = %q", got)
	}
	if got := cfg.Apps[1].FCM.ServiceAccountFile; got != filepath.Join(dir, "firebase.json") {
		t.Errorf("service_account_file = %q", got)
	}
	if cfg.Spool.Dir != filepath.Join(dir, "spool") || cfg.Auth.SecretsFile != "/etc/pushrelay/secrets" {
		t.Errorf("spool.dir = %q, auth.secrets_file = %q", cfg.Spool.Dir, cfg.Auth.SecretsFile)
	}
}
