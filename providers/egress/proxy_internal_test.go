package egress

import (
	"context"
	"errors"
	"strings"
	"testing"

	"golang.org/x/net/http/httpproxy"

	"github.com/pushrelay/pushrelay/providers/egress/egresstest"
)

// TestProxyFromTheEnvironment: with egress.proxy empty, HTTPS_PROXY and
// NO_PROXY decide, per target, as curl and Go do; HTTP_PROXY does not
// apply (every connection is TLS or tunnelled as such); loopback is never
// proxied. Errors never show the variable's password.
func TestProxyFromTheEnvironment(t *testing.T) {
	const secret = "env-s3cret"
	for _, tt := range []struct {
		name   string
		env    httpproxy.Config
		target string
		want   string // the proxy, redacted; "" for direct
		err    string
	}{
		{"HTTPS_PROXY", httpproxy.Config{HTTPSProxy: "http://relay:" + secret + "@proxy.corp:3128"}, "api.push.apple.com:443", "http://proxy.corp:3128", ""},
		{"scheme-less HTTPS_PROXY", httpproxy.Config{HTTPSProxy: "proxy.corp:3128"}, "api.push.apple.com:443", "http://proxy.corp:3128", ""},
		{"socks5 HTTPS_PROXY", httpproxy.Config{HTTPSProxy: "socks5://proxy.corp:1080"}, "fcm.googleapis.com:443", "socks5://proxy.corp:1080", ""},
		{"NO_PROXY domain", httpproxy.Config{HTTPSProxy: "http://proxy.corp:3128", NoProxy: "internal.corp"}, "push.internal.corp:443", "", ""},
		{"NO_PROXY CIDR", httpproxy.Config{HTTPSProxy: "http://proxy.corp:3128", NoProxy: "10.0.0.0/8"}, "10.1.2.3:443", "", ""},
		{"loopback", httpproxy.Config{HTTPSProxy: "http://proxy.corp:3128"}, "127.0.0.1:8443", "", ""},
		{"only HTTP_PROXY", httpproxy.Config{HTTPProxy: "http://proxy.corp:3128"}, "api.push.apple.com:443", "", ""},
		{"nothing", httpproxy.Config{}, "api.push.apple.com:443", "", ""},
		{"bad scheme", httpproxy.Config{HTTPSProxy: "ftp://relay:" + secret + "@proxy.corp:21"}, "api.push.apple.com:443", "", `HTTPS_PROXY (from the environment): scheme "ftp" is not supported`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := newProxySelector("", &tt.env)
			if err != nil {
				t.Fatal(err)
			}
			u, err := sel.forAddr(tt.target)
			got := ""
			if u != nil {
				got = redact(u)
			}
			switch {
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("forAddr(%s) error %v, want %q", tt.target, err, tt.err)
			case tt.err == "" && err != nil:
				t.Errorf("forAddr(%s) error %v", tt.target, err)
			case got != tt.want:
				t.Errorf("forAddr(%s) = %q, want %q", tt.target, got, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the password: %v", err)
			}
			if d := sel.describe(); strings.Contains(d, secret) {
				t.Errorf("describe() shows the password: %q", d)
			}
		})
	}
}

// TestEnvironmentProxyCarriesTheConnection dials through a proxy named by
// HTTPS_PROXY only. The target is not on loopback (which is never
// proxied), so the test proxy refuses it without dialing: what matters is
// that the request reached that proxy, from the source address, and that
// nothing resolved or dialed the target here.
func TestEnvironmentProxyCarriesTheConnection(t *testing.T) {
	proxy := egresstest.NewHTTP(t, egresstest.Options{User: "relay", Password: "env-s3cret"})
	e, err := newEgress(Config{SourceAddress: "127.0.0.2"}, []string{"push.example.test"}, nil,
		&httpproxy.Config{HTTPSProxy: proxy.URL()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.dial.DialContext(context.Background(), "tcp", "push.example.test:443")
	var pe *proxyError
	if !errors.As(err, &pe) || pe.status != 403 {
		t.Fatalf("dial = %v, want the test proxy's 403", err)
	}
	reqs := proxy.Requests()
	if len(reqs) != 1 || reqs[0].Target != "push.example.test:443" || reqs[0].Source != "127.0.0.2" {
		t.Errorf("proxy saw %+v", reqs)
	}
	if s := e.String(); !strings.Contains(s, "HTTPS_PROXY from the environment") || strings.Contains(s, "env-s3cret") {
		t.Errorf("String() = %q", s)
	}
}
