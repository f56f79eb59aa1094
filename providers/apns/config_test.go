package apns

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sideshow/apns2"
)

func TestConfigValidate(t *testing.T) {
	token := Config{Topic: testTopic, AuthKeyFile: "AuthKey.p8", KeyID: "ABC123DEFG", TeamID: "TEAM123456"}
	cert := Config{Topic: testTopic, CertFile: "cert.p12", CertPasswordFile: "cert.pass"}
	edit := func(c Config, f func(*Config)) Config { f(&c); return c }
	for _, c := range []struct {
		name string
		cfg  Config
		want []string // substrings of the error, in order; nil = valid
	}{
		{"token auth", token, nil},
		{"certificate auth", cert, nil},
		{"development", edit(token, func(c *Config) { c.Development = true }), nil},
		{"endpoint", edit(token, func(c *Config) { c.Endpoint = "https://127.0.0.1:8443/" }), nil},
		{"endpoint with path", edit(token, func(c *Config) { c.Endpoint = "https://gw.example/apns" }), nil},
		{"no topic", edit(token, func(c *Config) { c.Topic = "" }), []string{"apns.topic: required"}},
		{"bad topic", edit(token, func(c *Config) { c.Topic = "com.example app" }), []string{"apns.topic: must be a bundle id"}},
		{"no credentials", Config{Topic: testTopic}, []string{"apns.auth_key_file: required (or apns.cert_file"}},
		{"both credentials", edit(token, func(c *Config) { c.CertFile = "cert.pem" }), []string{"apns.cert_file: set either apns.auth_key_file"}},
		{"no key id", edit(token, func(c *Config) { c.KeyID = "" }), []string{"apns.key_id: required with apns.auth_key_file"}},
		{"no team id", edit(token, func(c *Config) { c.TeamID = "" }), []string{"apns.team_id: required with apns.auth_key_file"}},
		{"neither id", edit(token, func(c *Config) { c.KeyID, c.TeamID = "", "" }), []string{"apns.key_id: required with apns.auth_key_file"}},
		{"password with token", edit(token, func(c *Config) { c.CertPasswordFile = "p" }), []string{"apns.cert_password_file: only used with apns.cert_file"}},
		{"key id with cert", edit(cert, func(c *Config) { c.KeyID = "ABC123DEFG" }), []string{"apns.key_id: only used with apns.auth_key_file"}},
		{"http endpoint", edit(token, func(c *Config) { c.Endpoint = "http://127.0.0.1:8443" }), []string{"apns.endpoint: must be an https:// URL"}},
		{"endpoint without scheme", edit(token, func(c *Config) { c.Endpoint = "gw.example" }), []string{"apns.endpoint: must be an https:// URL"}},
		{"endpoint not a URL", edit(token, func(c *Config) { c.Endpoint = "127.0.0.1:8443" }), []string{"apns.endpoint: not a valid URL"}},
		{"endpoint without host", edit(token, func(c *Config) { c.Endpoint = "https:///x" }), []string{"apns.endpoint: the URL has no host"}},
		{"endpoint with password", edit(token, func(c *Config) { c.Endpoint = "https://u:hunter2@gw.example" }), []string{"apns.endpoint: must not carry user:password"}},
		{"endpoint with query", edit(token, func(c *Config) { c.Endpoint = "https://gw.example/?a=b" }), []string{"apns.endpoint: must not have a query"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", c.want)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error quotes a password: %s", msg)
			}
			rest := msg
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("Validate() = %q, want it to contain %q", msg, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestConfigHost(t *testing.T) {
	// providers/appconfig spells Apple's gateways out, to link no apns2.
	if (Config{}).Host() != apns2.HostProduction || (Config{Development: true}).Host() != apns2.HostDevelopment {
		t.Errorf("appconfig's gateways %q, %q are not apns2's %q, %q", Config{}.Host(),
			Config{Development: true}.Host(), apns2.HostProduction, apns2.HostDevelopment)
	}
	for _, c := range []struct {
		cfg   Config
		host  string
		hosts []string
	}{
		{Config{}, "https://api.push.apple.com", []string{"api.push.apple.com"}},
		{Config{Development: true}, "https://api.sandbox.push.apple.com", []string{"api.sandbox.push.apple.com"}},
		{Config{Development: true, Endpoint: "https://127.0.0.1:8443/"}, "https://127.0.0.1:8443", []string{"127.0.0.1"}},
		{Config{Endpoint: "https://APNs.Gateway.example/prefix"}, "https://APNs.Gateway.example/prefix", []string{"apns.gateway.example"}},
		{Config{Endpoint: "https://[::1]:8443"}, "https://[::1]:8443", []string{"::1"}},
	} {
		if got := c.cfg.Host(); got != c.host {
			t.Errorf("%+v: Host() = %q, want %q", c.cfg, got, c.host)
		}
		if got := c.cfg.Hosts(); !reflect.DeepEqual(got, c.hosts) {
			t.Errorf("%+v: Hosts() = %q, want %q", c.cfg, got, c.hosts)
		}
	}
}
