package egress_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/egress/egresstest"
	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// source is the address every test binds outbound connections to: Linux
// routes all of 127/8 to lo, so it is a second address of this host.
const source = "127.0.0.2"

// password is the proxy password of these tests: no error, log line or
// report may show it.
const password = "pr0xy-s3cret"

// sendTimeout is generous: tests run with -race on a busy machine.
const sendTimeout = 20 * time.Second

// proxyPKI is a CA and a certificate for 127.0.0.1 signed by it, for
// https:// proxies.
type proxyPKI struct {
	caPEM []byte
	cert  tls.Certificate
}

func newProxyPKI(t *testing.T) proxyPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "egress test proxy CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "egress test proxy"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return proxyPKI{
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert:  tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
}

// serverTLS serves the proxy's certificate offering only HTTP/1.1, like
// most proxies; an h2-only client hello fails against it.
func (p proxyPKI) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.cert}, NextProtos: []string{"http/1.1"}}
}

// writeCA writes the PEM blocks into one egress.ca_file.
func writeCA(t *testing.T, pems ...[]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	var all []byte
	for _, p := range pems {
		all = append(all, p...)
	}
	if err := os.WriteFile(path, all, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lookalikes are the APNs and FCM sandboxes with credentials they trust.
type lookalikes struct {
	apple  *sandbox.APNs
	google *sandbox.FCM
	creds  sandbox.Credentials
}

func newLookalikes(t *testing.T) lookalikes {
	t.Helper()
	apple, google := sandbox.NewAPNs(), sandbox.NewFCM()
	t.Cleanup(apple.Close)
	t.Cleanup(google.Close)
	creds, err := sandbox.WriteCredentials(t.TempDir(), apple, google)
	if err != nil {
		t.Fatal(err)
	}
	return lookalikes{apple: apple, google: google, creds: creds}
}

func (l lookalikes) apnsConfig() apns.Config {
	return apns.Config{
		Topic: l.creds.Topic, AuthKeyFile: l.creds.APNsKeyFile, KeyID: l.creds.KeyID, TeamID: l.creds.TeamID,
		Endpoint: l.apple.URL(),
	}
}

func (l lookalikes) fcmConfig() fcm.Config {
	return fcm.Config{ServiceAccountFile: l.creds.ServiceAccountFile, Endpoint: l.google.URL()}
}

func hostOf(rawURL string) string {
	u, _ := url.Parse(rawURL)
	return u.Host
}

func note(t *testing.T, platform, token string) *wire.Notification {
	t.Helper()
	n := wire.Notification{
		Platform: platform, ServerID: "server-1", DeviceID: token, Type: wire.TypeMessage,
		Message: "hello", ChannelID: "channel-1", PostID: "post-1", Version: "v2", Badge: wire.BadgeUnchanged,
	}
	if err := n.Normalize(); err != nil {
		t.Fatal(err)
	}
	return &n
}

func send(p providers.Provider, n *wire.Notification) providers.Result {
	ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
	defer cancel()
	return p.Send(ctx, n)
}

// deniedHosts records the egress's refusals.
type deniedHosts struct {
	mu    sync.Mutex
	hosts []string
}

func (d *deniedHosts) add(h string) {
	d.mu.Lock()
	d.hosts = append(d.hosts, h)
	d.mu.Unlock()
}

func (d *deniedHosts) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.hosts...)
}

// TestProvidersThroughProxies sends with the real APNs and FCM providers
// through each kind of proxy: every connection, the OAuth token fetch
// included, goes through a tunnel opened from the source address, and APNs
// speaks HTTP/2 through it, on one tunnel.
func TestProvidersThroughProxies(t *testing.T) {
	pki := newProxyPKI(t)
	for _, tt := range []struct {
		name  string
		start func(t *testing.T) *egresstest.Proxy
	}{
		{"http CONNECT", func(t *testing.T) *egresstest.Proxy { return egresstest.NewHTTP(t, egresstest.Options{}) }},
		{"http CONNECT with Basic auth", func(t *testing.T) *egresstest.Proxy {
			return egresstest.NewHTTP(t, egresstest.Options{User: "relay", Password: password})
		}},
		{"https CONNECT with Basic auth", func(t *testing.T) *egresstest.Proxy {
			return egresstest.NewHTTP(t, egresstest.Options{User: "relay", Password: password, TLS: pki.serverTLS()})
		}},
		{"socks5", func(t *testing.T) *egresstest.Proxy { return egresstest.NewSOCKS5(t, egresstest.Options{}) }},
		{"socks5 with username/password", func(t *testing.T) *egresstest.Proxy {
			return egresstest.NewSOCKS5(t, egresstest.Options{User: "relay", Password: password})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLookalikes(t)
			proxy := tt.start(t)
			var denied deniedHosts
			eg, err := egress.New(egress.Config{
				Proxy: proxy.URL(), SourceAddress: source, CAFile: writeCA(t, l.apple.CertPEM(), pki.caPEM),
			}, []string{"127.0.0.1"}, denied.add)
			if err != nil {
				t.Fatal(err)
			}
			ap, err := apns.New(l.apnsConfig(), eg)
			if err != nil {
				t.Fatal(err)
			}
			defer ap.Close()
			fp, err := fcm.New(context.Background(), l.fcmConfig(), eg)
			if err != nil {
				t.Fatal(err)
			}

			for i := range 2 {
				if res := send(ap, note(t, "apple_rn", "apns-token")); res.Outcome != providers.Delivered {
					t.Fatalf("APNs send %d: %+v", i, res)
				}
			}
			if res := send(fp, note(t, "android_rn", "fcm-token")); res.Outcome != providers.Delivered {
				t.Fatalf("FCM send: %+v", res)
			}

			for _, r := range l.apple.Requests() {
				if r.Proto != "HTTP/2.0" {
					t.Errorf("APNs request over %s, want HTTP/2.0", r.Proto)
				}
			}
			if l.apple.Delivered() != 2 || l.google.Delivered() != 1 || l.google.TokenFetches() != 1 {
				t.Errorf("delivered: APNs %d, FCM %d; token fetches %d", l.apple.Delivered(), l.google.Delivered(), l.google.TokenFetches())
			}
			// Two APNs sends, one tunnel: the HTTP/2 connection is reused.
			if n := proxy.Tunnels(hostOf(l.apple.URL())); n != 1 {
				t.Errorf("%d tunnels to APNs, want 1", n)
			}
			// The token fetch and the send both went through the proxy.
			if n := proxy.Tunnels(hostOf(l.google.URL())); n < 1 {
				t.Errorf("%d tunnels to FCM, want at least 1", n)
			}
			for _, r := range proxy.Requests() {
				if r.Source != source || !r.Opened {
					t.Errorf("proxy saw %+v, want an opened tunnel from %s", r, source)
				}
				if tt.name == "https CONNECT with Basic auth" && r.ALPN != "http/1.1" {
					t.Errorf("ALPN with the https proxy: %q, want http/1.1", r.ALPN)
				}
			}
			if d := denied.list(); len(d) != 0 {
				t.Errorf("denied %v", d)
			}
		})
	}
}

// TestDirectFromSourceAddress connects without a proxy: the server sees the
// source address.
func TestDirectFromSourceAddress(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var peers []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		peers = append(peers, r.RemoteAddr)
		mu.Unlock()
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ca := writeCA(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))

	eg, err := egress.New(egress.Config{SourceAddress: source, CAFile: ca}, []string{"127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: eg.Transport()}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(peers) != 1 || !strings.HasPrefix(peers[0], source+":") || resp.Proto != "HTTP/2.0" {
		t.Errorf("server saw %v over %s, want one request from %s over HTTP/2.0", peers, resp.Proto, source)
	}
}

// TestAllowlistRefusesBeforeTheProxy: a host outside the allowlist is
// refused before any connection; the proxy sees nothing.
func TestAllowlistRefusesBeforeTheProxy(t *testing.T) {
	t.Parallel()
	l := newLookalikes(t)
	proxy := egresstest.NewHTTP(t, egresstest.Options{})
	var denied deniedHosts
	// The sandbox's certificate is valid for localhost too; only
	// 127.0.0.1 is allowed.
	eg, err := egress.New(egress.Config{Proxy: proxy.URL(), CAFile: l.creds.CAFile, AllowedHosts: []string{"127.0.0.1"}},
		nil, denied.add)
	if err != nil {
		t.Fatal(err)
	}
	cfg := l.apnsConfig()
	cfg.Endpoint = strings.Replace(l.apple.URL(), "127.0.0.1", "localhost", 1)
	ap, err := apns.New(cfg, eg)
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Close()
	res := send(ap, note(t, "apple_rn", "apns-token"))
	if res.Outcome != providers.Failed || res.Reason != apns.ReasonEgressDenied || !errors.Is(res.Err, egress.ErrHostNotAllowed) {
		t.Errorf("send to a host not allowed: %+v", res)
	}
	_, err = (&http.Client{Transport: eg.Transport()}).Get(cfg.Endpoint)
	if !errors.Is(err, egress.ErrHostNotAllowed) {
		t.Errorf("GET: %v", err)
	}
	if got := proxy.Requests(); len(got) != 0 {
		t.Errorf("the proxy saw %+v, want nothing", got)
	}
	if got := denied.list(); len(got) != 2 || got[0] != "localhost" {
		t.Errorf("denied %v, want localhost twice", got)
	}
}

// TestProxyRefusalsAreClearAndPasswordFree: a proxy refusing the
// credentials (407, SOCKS5) fails sends, the FCM token fetch's included,
// as a misconfiguration (Permanent, proxy_auth) with an error that says
// so, names the proxy and never shows the password.
func TestProxyRefusalsAreClearAndPasswordFree(t *testing.T) {
	t.Parallel()
	httpProxy := egresstest.NewHTTP(t, egresstest.Options{User: "relay", Password: password})
	socksProxy := egresstest.NewSOCKS5(t, egresstest.Options{User: "relay", Password: password})
	wrong := url.UserPassword("relay", "wr0ng-"+password)
	for _, tt := range []struct {
		name  string
		proxy string
		want  []string
	}{
		{"407 with wrong credentials", httpProxy.URLWith(wrong),
			[]string{"proxy http://" + httpProxy.Addr() + " refused CONNECT", "407 Proxy Authentication Required", "check egress.proxy credentials (the user and password)"}},
		{"407 without credentials", httpProxy.URLWith(nil),
			[]string{"407 Proxy Authentication Required", "wants a user and password"}},
		{"SOCKS5 with wrong credentials", socksProxy.URLWith(wrong),
			[]string{"SOCKS5 proxy socks5://" + socksProxy.Addr(), "authentication failed"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLookalikes(t)
			eg, err := egress.New(egress.Config{Proxy: tt.proxy, SourceAddress: source, CAFile: l.creds.CAFile},
				[]string{"127.0.0.1"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ap, err := apns.New(l.apnsConfig(), eg)
			if err != nil {
				t.Fatal(err)
			}
			defer ap.Close()
			fp, err := fcm.New(context.Background(), l.fcmConfig(), eg)
			if err != nil {
				t.Fatal(err)
			}
			for _, res := range []providers.Result{
				send(ap, note(t, "apple_rn", "apns-token")),
				send(fp, note(t, "android_rn", "fcm-token")), // fails at the OAuth token fetch
			} {
				if res.Outcome != providers.Failed || res.Err == nil {
					t.Fatalf("send through a refusing proxy: %+v, want failed", res)
				}
				if res.Reason != egress.ReasonProxyAuth || !errors.Is(res.Err, egress.ErrMisconfigured) {
					t.Errorf("reason %q, error %v; want %s matching egress.ErrMisconfigured", res.Reason, res.Err, egress.ReasonProxyAuth)
				}
				msg := res.Err.Error()
				for _, w := range tt.want {
					if !strings.Contains(msg, w) {
						t.Errorf("error %q does not say %q", msg, w)
					}
				}
				if strings.Contains(msg, password) {
					t.Errorf("error shows the proxy password: %q", msg)
				}
			}
			if l.apple.Delivered()+l.google.Delivered()+l.google.TokenFetches() != 0 {
				t.Error("something got through")
			}
		})
	}
}
