package egress_test

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/egress/egresstest"
	"github.com/pushrelay/pushrelay/providers/upstream"
)

// TestMisconfigurationsAreRecognised: each way the egress path can be
// misconfigured (not down) reaches the APNs provider (its own HTTP/2
// client) and the upstream provider (net/http) as a Permanent result with a
// fixed reason, matching egress.ErrMisconfigured, with a message that names
// the proxy (without its password) or the host and what to fix. A proxy or
// target that is only down stays Retry and is not a misconfiguration.
func TestMisconfigurationsAreRecognised(t *testing.T) {
	t.Parallel()
	l := newLookalikes(t)
	pki := newProxyPKI(t)
	httpProxy := egresstest.NewHTTP(t, egresstest.Options{User: "relay", Password: password})
	tlsProxy := egresstest.NewHTTP(t, egresstest.Options{TLS: pki.serverTLS()})
	socksProxy := egresstest.NewSOCKS5(t, egresstest.Options{User: "relay", Password: password})
	openSocks := egresstest.NewSOCKS5(t, egresstest.Options{})
	wrong := url.UserPassword("relay", "wr0ng-"+password)

	// An HTTPS server with a certificate for 127.0.0.1 and example.com,
	// not localhost, speaking HTTP/1.1 only, its CA trusted.
	h1 := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"status":"OK"}`)
	}))
	defer h1.Close()
	h1CA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h1.Certificate().Raw})
	trusted := writeCA(t, l.apple.CertPEM(), pki.caPEM, h1CA)
	h1Port := strconv.Itoa(portOf(t, h1.URL))
	// The same certificate on a server that speaks HTTP/2.
	h2 := httptest.NewUnstartedServer(http.NotFoundHandler())
	h2.EnableHTTP2 = true
	h2.StartTLS()
	defer h2.Close()
	h2Port := strconv.Itoa(portOf(t, h2.URL))
	// An HTTPS server that ignores ALPN, as nginx without http2 does
	// (Go's own refuses the handshake with an alert instead).
	noALPN := tlsListener(t, &tls.Config{Certificates: h1.TLS.Certificates})
	noALPNPort := strconv.Itoa(noALPN.Addr().(*net.TCPAddr).Port)
	// A plain HTTP proxy, as squid answers a TLS client hello.
	plain := answerEveryConnection(t, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

	// A proxy that is down: nothing listens on its port.
	down := "http://127.0.0.1:" + strconv.Itoa(closedPort(t))
	// A target that is down, behind a working proxy (which answers 502).
	openProxy := egresstest.NewHTTP(t, egresstest.Options{})
	closed := "https://127.0.0.1:" + strconv.Itoa(closedPort(t))

	for _, tt := range []struct {
		name     string
		proxy    string
		ca       string
		endpoint string
		h2Only   bool   // only the HTTP/2 client meets it
		reason   string // "" for not a misconfiguration: Retry
		want     []string
	}{
		{name: "407, wrong password", proxy: httpProxy.URLWith(wrong), ca: trusted, endpoint: l.apple.URL(), reason: egress.ReasonProxyAuth,
			want: []string{"proxy http://" + httpProxy.Addr() + " refused CONNECT", "407", "check egress.proxy credentials (the user and password)"}},
		{name: "407, no credentials", proxy: httpProxy.URLWith(nil), ca: trusted, endpoint: l.apple.URL(), reason: egress.ReasonProxyAuth,
			want: []string{"proxy http://" + httpProxy.Addr(), "407", "wants a user and password", "egress.proxy"}},
		{name: "403, target not allowed by the proxy", proxy: openProxy.URL(), ca: trusted, endpoint: "https://push.example.test", reason: egress.ReasonProxyRefused,
			want: []string{"proxy http://" + openProxy.Addr() + " refused CONNECT to push.example.test:443 with 403", "in the proxy's rules"}},
		{name: "SOCKS5, wrong password", proxy: socksProxy.URLWith(wrong), ca: trusted, endpoint: l.apple.URL(), reason: egress.ReasonProxyAuth,
			want: []string{"SOCKS5 proxy socks5://" + socksProxy.Addr(), "authentication failed", "check egress.proxy credentials (the user and password)"}},
		{name: "SOCKS5, no credentials", proxy: socksProxy.URLWith(nil), ca: trusted, endpoint: l.apple.URL(), reason: egress.ReasonProxyAuth,
			want: []string{"SOCKS5 proxy socks5://" + socksProxy.Addr() + " wants a user and password, and egress.proxy has none", "socks5://user:password@host:port"}},
		{name: "SOCKS5, target not allowed by the proxy", proxy: openSocks.URL(), ca: trusted, endpoint: "https://push.example.test", reason: egress.ReasonProxyRefused,
			want: []string{"SOCKS5 proxy socks5://" + openSocks.Addr() + " refused the tunnel to push.example.test:443"}},
		{name: "https proxy not trusted", proxy: tlsProxy.URL(), ca: l.creds.CAFile, endpoint: l.apple.URL(), reason: egress.ReasonProxyTLS,
			want: []string{"TLS with the proxy https://" + tlsProxy.Addr(), "add the CA that issued it to egress.ca_file"}},
		{name: "plain proxy written https://", proxy: "https://" + plain, ca: trusted, endpoint: l.apple.URL(), reason: egress.ReasonProxyTLS,
			want: []string{"write http:// in egress.proxy"}},
		{name: "target re-signed by an unknown CA", proxy: openProxy.URL(), ca: "", endpoint: l.apple.URL(), reason: egress.ReasonTLSUntrusted,
			want: []string{"TLS with 127.0.0.1:", `issued by "pushrelay sandbox"`, "egress.ca_file"}},
		{name: "target certificate for another name", ca: trusted, endpoint: "https://localhost:" + h2Port, reason: egress.ReasonTLSName,
			want: []string{"TLS with localhost:" + h2Port, "not for localhost", "let TLS to localhost through untouched"}},
		{name: "no h2 where it is needed: ALPN refused", ca: trusted, endpoint: h1.URL, h2Only: true, reason: egress.ReasonNoH2,
			want: []string{"127.0.0.1:" + h1Port + " does not speak HTTP/2", "refused ALPN h2", "HTTP/2 is required"}},
		{name: "no h2 where it is needed: ALPN ignored", ca: trusted, endpoint: "https://127.0.0.1:" + noALPNPort, h2Only: true, reason: egress.ReasonNoH2,
			want: []string{"127.0.0.1:" + noALPNPort + " does not speak HTTP/2", "chose no protocol", "HTTP/2 is required"}},
		{name: "proxy down", proxy: down, ca: trusted, endpoint: l.apple.URL(),
			want: []string{"cannot reach the proxy"}},
		{name: "target down behind the proxy", proxy: openProxy.URL(), ca: trusted, endpoint: closed,
			want: []string{"502"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			eg, err := egress.New(egress.Config{Proxy: tt.proxy, CAFile: tt.ca},
				[]string{"127.0.0.1", "localhost", "push.example.test"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg := l.apnsConfig()
			cfg.Endpoint = tt.endpoint
			ap, err := apns.New(cfg, eg)
			if err != nil {
				t.Fatal(err)
			}
			defer ap.Close()
			up, err := upstream.New(upstream.Config{URL: tt.endpoint}, eg)
			if err != nil {
				t.Fatal(err)
			}
			results := map[string]providers.Result{"apns": send(ap, note(t, "apple_rn", "apns-token"))}
			if !tt.h2Only {
				results["upstream"] = send(up, note(t, "apple_rn", "upstream-token"))
			}
			for name, res := range results {
				if res.Err == nil {
					t.Fatalf("%s: %+v, want a failure", name, res)
				}
				msg := res.Err.Error()
				if tt.reason == "" {
					if res.Outcome != providers.Retry || errors.Is(res.Err, egress.ErrMisconfigured) {
						t.Errorf("%s: %v %s (%v), want Retry, not a misconfiguration", name, res.Outcome, res.Reason, res.Err)
					}
				} else if res.Outcome != providers.Failed || res.Reason != tt.reason || !errors.Is(res.Err, egress.ErrMisconfigured) {
					t.Errorf("%s: %v %s (%v), want failed %s matching ErrMisconfigured", name, res.Outcome, res.Reason, res.Err, tt.reason)
				}
				for _, w := range tt.want {
					if !strings.Contains(msg, w) {
						t.Errorf("%s: error %q does not say %q", name, msg, w)
					}
				}
				if strings.Contains(msg, password) {
					t.Errorf("%s: error shows the proxy password: %q", name, msg)
				}
			}
		})
	}
	if n := l.apple.Delivered(); n != 0 {
		t.Errorf("%d delivered through a misconfigured path", n)
	}
}

// tlsListener accepts TLS connections with cfg and completes their
// handshakes, then holds them open until the test ends.
func tlsListener(t *testing.T, cfg *tls.Config) net.Listener {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln
}

// answerEveryConnection writes answer to every connection, then closes
// it; it returns the listener's host:port.
func answerEveryConnection(t *testing.T, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, answer)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// TestHostNotAllowedIsAMisconfiguration: the allowlist's refusal matches
// both ErrHostNotAllowed and ErrMisconfigured, with reason
// host_not_allowed and the fix.
func TestHostNotAllowedIsAMisconfiguration(t *testing.T) {
	eg, err := egress.New(egress.Config{}, []string{"127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&http.Client{Transport: eg.Transport()}).Get("https://push.example.test/")
	me := egress.AsMisconfig(err)
	if !errors.Is(err, egress.ErrHostNotAllowed) || !errors.Is(err, egress.ErrMisconfigured) || me == nil ||
		me.Reason != egress.ReasonHostNotAllowed || !strings.Contains(err.Error(), "add push.example.test to egress.allowed_hosts") {
		t.Errorf("GET outside the allowlist: %v", err)
	}
	if !slices.Contains(egress.MisconfigReasons(), me.Reason) {
		t.Errorf("reason %q is not in MisconfigReasons", me.Reason)
	}
}

// TestMisconfiguredRemembersTheLastRequest: for libraries that keep only
// an error's text (the OAuth token fetch), Egress.Misconfigured answers
// what the last request to a host met, and forgets it once a request to
// that host succeeds.
func TestMisconfiguredRemembersTheLastRequest(t *testing.T) {
	l := newLookalikes(t)
	proxy := egresstest.NewHTTP(t, egresstest.Options{User: "relay", Password: password})
	eg, err := egress.New(egress.Config{Proxy: proxy.URLWith(url.UserPassword("relay", "wr0ng")), CAFile: l.creds.CAFile},
		[]string{"127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	textOnly := errors.New("oauth2: cannot fetch token: only the text is left")
	get := func() string {
		t.Helper()
		resp, err := (&http.Client{Transport: eg.Transport()}).Get(l.google.URL() + "/")
		if err == nil {
			resp.Body.Close()
		}
		u, _ := url.Parse(l.google.URL())
		for _, other := range []string{"localhost", "127.0.0.1", "127.0.0.1:1"} {
			if eg.Misconfigured(textOnly, other) != nil {
				t.Errorf("a misconfiguration remembered for %s, never asked for", other)
			}
		}
		if me := eg.Misconfigured(textOnly, u.Host); me != nil {
			return me.Reason
		}
		return ""
	}
	if got := get(); got != egress.ReasonProxyAuth {
		t.Errorf("after a 407: Misconfigured = %q, want %q", got, egress.ReasonProxyAuth)
	}
	proxy.SetCredentials("relay", "wr0ng") // the proxy's users are fixed
	if got := get(); got != "" {
		t.Errorf("after a success: Misconfigured = %q, want none", got)
	}
}
