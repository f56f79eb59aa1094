package egress_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/egress/egresstest"
	"github.com/pushrelay/pushrelay/providers/fcm"
)

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func portOf(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func stepNames(r egress.Result) string {
	names := make([]string, len(r.Steps))
	for i, s := range r.Steps {
		names[i] = s.Name
	}
	return strings.Join(names, ",")
}

func TestProbe(t *testing.T) {
	l := newLookalikes(t)
	pki := newProxyPKI(t)
	caFile := writeCA(t, l.apple.CertPEM(), pki.caPEM)
	plainProxy := egresstest.NewHTTP(t, egresstest.Options{User: "relay", Password: password})
	tlsProxy := egresstest.NewHTTP(t, egresstest.Options{User: "relay", Password: password, TLS: pki.serverTLS()})
	socksProxy := egresstest.NewSOCKS5(t, egresstest.Options{User: "relay", Password: password})
	wrong := url.UserPassword("relay", "wr0ng-"+password)

	// An HTTPS server that does not speak HTTP/2, like a TLS-inspecting
	// proxy that downgrades.
	h1 := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer h1.Close()
	h1CA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h1.Certificate().Raw})

	apnsPort, fcmPort := portOf(t, l.apple.URL()), portOf(t, l.google.URL())
	apnsTarget := egress.Target{Host: "127.0.0.1", Port: apnsPort, NeedH2: true}
	tokenCheck := egress.Check{Name: "oauth token", Fix: "check fcm.service_account_file"}
	fcmTarget := func(eg *egress.Egress) egress.Target {
		c := tokenCheck
		c.Run = func(ctx context.Context) (string, error) {
			return "access token issued", fcm.FetchToken(ctx, l.fcmConfig(), eg)
		}
		return egress.Target{Host: "127.0.0.1", Port: fcmPort, Checks: []egress.Check{c}}
	}

	for _, tt := range []struct {
		name   string
		cfg    egress.Config
		target func(eg *egress.Egress) egress.Target
		path   string // the Result's Path starts with it
		steps  string // the steps' names
		fix    string // in Fix; "" for success
	}{
		{
			name: "direct, APNs", cfg: egress.Config{SourceAddress: source, CAFile: caFile},
			target: func(*egress.Egress) egress.Target { return apnsTarget },
			path:   "direct from " + source, steps: "allowlist,dns,tcp,tls,alpn",
		},
		{
			name: "CONNECT, FCM with its token", cfg: egress.Config{Proxy: plainProxy.URL(), SourceAddress: source, CAFile: caFile},
			target: fcmTarget,
			path:   "via http://" + plainProxy.Addr() + " (CONNECT) from " + source, steps: "allowlist,dns,proxy,connect,tls,alpn,oauth token",
		},
		{
			name: "https CONNECT, APNs", cfg: egress.Config{Proxy: tlsProxy.URL(), SourceAddress: source, CAFile: caFile},
			target: func(*egress.Egress) egress.Target { return apnsTarget },
			path:   "via https://" + tlsProxy.Addr() + " (TLS, CONNECT) from " + source, steps: "allowlist,dns,proxy,proxy-tls,connect,tls,alpn",
		},
		{
			name: "SOCKS5, FCM with its token", cfg: egress.Config{Proxy: socksProxy.URL(), SourceAddress: source, CAFile: caFile},
			target: fcmTarget,
			path:   "via socks5://" + socksProxy.Addr() + " (SOCKS5) from " + source, steps: "allowlist,dns,proxy,socks,tls,alpn,oauth token",
		},
		{
			name: "nothing listening, direct", cfg: egress.Config{SourceAddress: source, CAFile: caFile},
			target: func(*egress.Egress) egress.Target { return egress.Target{Host: "127.0.0.1", Port: closedPort(t)} },
			path:   "direct from " + source, steps: "allowlist,dns,tcp",
			fix: "allow TCP ",
		},
		{
			name: "nothing listening, through the proxy", cfg: egress.Config{Proxy: plainProxy.URL(), CAFile: caFile},
			target: func(*egress.Egress) egress.Target { return egress.Target{Host: "127.0.0.1", Port: closedPort(t)} },
			path:   "via http://", steps: "allowlist,dns,proxy,connect",
			fix: "the proxy could not reach 127.0.0.1:",
		},
		{
			name: "proxy not listening", cfg: egress.Config{Proxy: "http://relay:" + password + "@127.0.0.1:" + strconv.Itoa(closedPort(t)), SourceAddress: source},
			target: func(*egress.Egress) egress.Target { return apnsTarget },
			path:   "via http://127.0.0.1:", steps: "allowlist,dns,proxy",
			fix: "check that the proxy runs there and that egress.proxy names its address and port, and that no firewall rejects TCP ",
		},
		{
			name: "wrong proxy password", cfg: egress.Config{Proxy: plainProxy.URLWith(wrong), CAFile: caFile},
			target: func(*egress.Egress) egress.Target { return apnsTarget },
			path:   "via http://", steps: "allowlist,dns,proxy,connect",
			fix: "proxy refused CONNECT: 407, check egress.proxy credentials (the user and password)",
		},
		{
			name: "no proxy credentials", cfg: egress.Config{Proxy: plainProxy.URLWith(nil), CAFile: caFile},
			target: func(*egress.Egress) egress.Target { return apnsTarget },
			path:   "via http://", steps: "allowlist,dns,proxy,connect",
			fix: "proxy refused CONNECT: 407, the proxy wants a user and password: write them into egress.proxy: http://user:password@host:port",
		},
		{
			name: "wrong SOCKS5 password", cfg: egress.Config{Proxy: socksProxy.URLWith(wrong), CAFile: caFile},
			target: func(*egress.Egress) egress.Target { return apnsTarget },
			path:   "via socks5://", steps: "allowlist,dns,proxy,socks",
			fix: "check egress.proxy credentials (the user and password)",
		},
		{
			name: "https proxy not trusted", cfg: egress.Config{Proxy: tlsProxy.URL(), CAFile: l.creds.CAFile},
			target: func(*egress.Egress) egress.Target { return apnsTarget },
			path:   "via https://", steps: "allowlist,dns,proxy-tls",
			fix: "the proxy's certificate is not trusted: add the CA that issued it to egress.ca_file",
		},
		{
			name: "host not trusted by the CA", cfg: egress.Config{Proxy: plainProxy.URL()},
			target: func(*egress.Egress) egress.Target { return apnsTarget },
			path:   "via http://", steps: "allowlist,dns,proxy,connect,tls",
			fix: `(issued by "pushrelay sandbox") is not trusted`,
		},
		{
			name: "no h2 where APNs needs it", cfg: egress.Config{CAFile: writeCA(t, h1CA)},
			target: func(*egress.Egress) egress.Target {
				return egress.Target{Host: "127.0.0.1", Port: portOf(t, h1.URL), NeedH2: true}
			},
			path: "direct from 127.0.0.1", steps: "allowlist,dns,tcp,tls,alpn",
			fix: "HTTP/2 is required",
		},
		{
			name: "HTTP/1.1 is enough elsewhere", cfg: egress.Config{CAFile: writeCA(t, h1CA)},
			target: func(*egress.Egress) egress.Target {
				return egress.Target{Host: "127.0.0.1", Port: portOf(t, h1.URL)}
			},
			path: "direct from 127.0.0.1", steps: "allowlist,dns,tcp,tls,alpn",
		},
		{
			name: "a check fails", cfg: egress.Config{CAFile: caFile},
			target: func(*egress.Egress) egress.Target {
				t := apnsTarget
				t.Checks = []egress.Check{{Name: "key", Run: func(context.Context) (string, error) { return "", errors.New("refused") }, Fix: "check the key"}}
				return t
			},
			path: "direct", steps: "allowlist,dns,tcp,tls,alpn,key",
			fix: "check the key",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			eg, err := egress.New(tt.cfg, []string{"127.0.0.1"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer eg.CloseIdleConnections()
			results := eg.Probe(context.Background(), []egress.Target{tt.target(eg)})
			if len(results) != 1 {
				t.Fatalf("%d results", len(results))
			}
			r := results[0]
			if !strings.HasPrefix(r.Path, tt.path) || stepNames(r) != tt.steps {
				t.Errorf("path %q, steps %s; want %q..., %s", r.Path, stepNames(r), tt.path, tt.steps)
			}
			switch {
			case tt.fix == "" && r.Err != nil:
				t.Errorf("failed: %v (fix: %s)", r.Err, r.Fix)
			case tt.fix != "" && (r.Err == nil || !strings.Contains(r.Fix, tt.fix)):
				t.Errorf("err %v, fix %q; want a fix saying %q", r.Err, r.Fix, tt.fix)
			}
			var report bytes.Buffer
			if err := egress.WriteReport(&report, results); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(report.String(), password) || strings.Contains(eg.String(), password) {
				t.Errorf("the report shows the proxy password:\n%s", report.String())
			}
			if testing.Verbose() {
				t.Logf("\n%s", report.String())
			}
		})
	}
}

// TestProbeAllowlist: a target outside the allowlist fails first, and
// nothing, not even the proxy, is contacted for it.
func TestProbeAllowlist(t *testing.T) {
	proxy := egresstest.NewHTTP(t, egresstest.Options{})
	eg, err := egress.New(egress.Config{Proxy: proxy.URL(), AllowedHosts: []string{"127.0.0.1"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	results := eg.Probe(context.Background(), []egress.Target{{Host: "localhost", Port: closedPort(t)}})
	r := results[0]
	if !errors.Is(r.Err, egress.ErrHostNotAllowed) || stepNames(r) != "allowlist" || !strings.Contains(r.Fix, "add localhost to egress.allowed_hosts") {
		t.Errorf("result %+v", r)
	}
	if got := proxy.Requests(); len(got) != 0 {
		t.Errorf("the proxy saw %+v", got)
	}
}

// TestWriteReport: one row per target, in order, then each one's steps.
func TestWriteReport(t *testing.T) {
	l := newLookalikes(t)
	eg, err := egress.New(egress.Config{SourceAddress: source, CAFile: l.creds.CAFile}, []string{"127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dead := closedPort(t)
	results := eg.Probe(context.Background(), []egress.Target{
		{Host: "127.0.0.1", Port: portOf(t, l.apple.URL()), NeedH2: true},
		{Host: "127.0.0.1", Port: dead},
	})
	var out bytes.Buffer
	if err := egress.WriteReport(&out, results); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	fields := func(i int) string { return strings.Join(strings.Fields(lines[i]), " ") }
	apnsPort := strconv.Itoa(portOf(t, l.apple.URL()))
	for i, want := range []string{
		"HOST PORT PATH RESULT TO FIX",
		"127.0.0.1 " + apnsPort + " direct from 127.0.0.2 ok -",
		"127.0.0.1 " + strconv.Itoa(dead) + " direct from 127.0.0.2 FAIL at tcp nothing accepted the connection at 127.0.0.1:" + strconv.Itoa(dead) +
			": check the endpoint in the config, and allow TCP " + strconv.Itoa(dead) + " from 127.0.0.2 to 127.0.0.1 on the firewall",
		"",
		"127.0.0.1:" + apnsPort,
		"ok allowlist 127.0.0.1 is in egress.allowed_hosts",
	} {
		if got := fields(i); got != want {
			t.Errorf("line %d = %q, want %q", i, got, want)
		}
	}
	if !strings.Contains(out.String(), "FAIL  tcp        dial tcp 127.0.0.2:0->127.0.0.1:"+strconv.Itoa(dead)) {
		t.Errorf("report without the steps:\n%s", out.String())
	}
}
