// Package egress builds the one outbound HTTP transport every provider uses:
// the configured forward proxy (or HTTPS_PROXY), the allowlisted source
// address, extra trusted roots, and a host allowlist enforced before any
// connection is made. Probe checks that path host by host, step by step,
// for `pushrelay check --egress`, and WriteReport prints what it found.
//
// It knows no provider: it imports nothing of ours.
package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
	"golang.org/x/net/http2"
)

// Config is the `egress` section of the relay's configuration.
type Config struct {
	// Proxy is the forward proxy URL (http://, https://, socks5:// or
	// socks5h://, with optional user:password). Every connection goes
	// through it as a CONNECT or SOCKS5 tunnel, and the proxy resolves the
	// names (socks5 and socks5h alike). Empty means HTTPS_PROXY and
	// NO_PROXY from the environment (HTTP_PROXY does not apply: every
	// connection is tunnelled).
	Proxy string `yaml:"proxy"`
	// SourceAddress binds every outbound connection to this local IP.
	SourceAddress string `yaml:"source_address"`
	// CAFile holds extra PEM roots trusted on top of the system's.
	CAFile string `yaml:"ca_file"`
	// AllowedHosts are the only hosts requests may go to. Empty means the
	// hosts the configured apps need (the relay computes that list).
	AllowedHosts []string `yaml:"allowed_hosts"`
}

// Timeouts of every outbound connection.
const (
	idleConnTimeout  = 90 * time.Second
	handshakeTimeout = 10 * time.Second
	// A ping after 15s of silence, and a connection that does not answer
	// it within 10s is dropped: a proxy or firewall that silently forgot
	// an idle tunnel costs one send, not many.
	pingAfter   = 15 * time.Second
	pingTimeout = 10 * time.Second
)

// Egress is the shared outbound path. It is safe for concurrent use.
type Egress struct {
	base     *http.Transport
	tls      *tls.Config // what base's TLS config was made from; net/http edits base's own
	dial     *dialer
	roots    *x509.CertPool // system roots + egress.ca_file
	source   string         // egress.source_address, "" when the OS chooses
	caFile   string
	allowed  map[string]bool
	onDenied func(host string)
	recent   misconfigs // what the last request to each host met
}

// ErrHostNotAllowed is returned (wrapped, in a *MisconfigError) for a
// request to a host outside the allowlist. No connection is attempted.
var ErrHostNotAllowed = errors.New("host is not in egress.allowed_hosts")

// New builds the egress path from cfg. defaultHosts is the allowlist used
// when cfg.AllowedHosts is empty: the hosts the configured apps need.
// onDenied, if not nil, is called with the host of every refused request.
// With cfg.Proxy empty, HTTPS_PROXY and NO_PROXY are read now, once.
// Errors name the config key at fault and never show a proxy password.
func New(cfg Config, defaultHosts []string, onDenied func(host string)) (*Egress, error) {
	return newEgress(cfg, defaultHosts, onDenied, httpproxy.FromEnvironment())
}

// newEgress is New with the environment's proxy settings given.
func newEgress(cfg Config, defaultHosts []string, onDenied func(host string), env *httpproxy.Config) (*Egress, error) {
	sel, err := newProxySelector(cfg.Proxy, env)
	if err != nil {
		return nil, err
	}
	direct := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if cfg.SourceAddress != "" {
		ip := net.ParseIP(cfg.SourceAddress)
		if ip == nil {
			return nil, fmt.Errorf("egress.source_address: %q is not an IP address", cfg.SourceAddress)
		}
		direct.LocalAddr = &net.TCPAddr{IP: ip}
	}
	roots, err := rootPool(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	d := &dialer{
		direct:   direct,
		proxy:    sel,
		proxyTLS: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
	}
	tlsConf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	t := &http.Transport{
		// No Proxy: the dialer goes through the proxy itself, for every
		// connection, so that all of them leave from the source address,
		// an https:// proxy trusts egress.ca_file and is offered HTTP/1.1
		// only, and a refusal says which proxy refused what, and why.
		DialContext:           d.DialContext,
		TLSClientConfig:       tlsConf.Clone(),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       idleConnTimeout,
		TLSHandshakeTimeout:   handshakeTimeout,
		ExpectContinueTimeout: time.Second,
		HTTP2:                 &http.HTTP2Config{SendPingTimeout: pingAfter, PingTimeout: pingTimeout},
	}
	hosts := cfg.AllowedHosts
	if len(hosts) == 0 {
		hosts = defaultHosts
	}
	allowed := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		allowed[strings.ToLower(h)] = true
	}
	return &Egress{
		base: t, tls: tlsConf, dial: d, roots: roots, source: cfg.SourceAddress, caFile: cfg.CAFile,
		allowed: allowed, onDenied: onDenied,
	}, nil
}

// Transport returns the shared transport, HTTP/1.1 or HTTP/2 as the server
// offers, behind the host allowlist.
func (e *Egress) Transport() http.RoundTripper {
	return &guard{e: e, next: e.base}
}

// HTTP2Transport returns a transport of its own that speaks only HTTP/2 over
// TLS (what APNs requires, and what FCM speaks), presenting cert when it is
// not nil, behind the host allowlist. It uses one connection per host until
// that one carries 100 requests at once, then opens another (up to 8). Each
// call makes new connections: call it once per app and share the result.
// RoundTrip has read and closed the request's body when it returns, so the
// caller may use the body's bytes again.
//
// Its client is h2Transport, this package's own: no goroutine per request,
// and the frames of several requests leave in one TLS record and one
// system call (see batchConn), written by one writer goroutine.
func (e *Egress) HTTP2Transport(cert *tls.Certificate) http.RoundTripper {
	tc := e.tls.Clone()
	tc.NextProtos = []string{http2.NextProtoTLS}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &guard{e: e, next: newLanes(func() http.RoundTripper {
		return &h2Transport{
			dial: func(ctx context.Context, addr string) (net.Conn, error) {
				cfg := tc
				if host, _, err := net.SplitHostPort(addr); err == nil && cfg.ServerName == "" {
					cfg = tc.Clone() // once per connection
					cfg.ServerName = host
				}
				return e.dialHTTP2(ctx, addr, cfg)
			},
			idleTimeout: idleConnTimeout, pingAfter: pingAfter, pingTimeout: pingTimeout,
		}
	})}
}

// dialHTTP2 connects to addr on the egress path, does the TLS handshake
// with cfg, checks that the server speaks HTTP/2 and batches the writes.
func (e *Egress) dialHTTP2(ctx context.Context, addr string, cfg *tls.Config) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	raw, err := e.dial.dialRaw(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		if me := targetMisconfig(err, cfg.ServerName, addr); me != nil {
			return nil, me
		}
		return nil, err
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
		conn.Close()
		return nil, noH2(cfg.ServerName, addr, p)
	}
	return &batchTLSConn{batchConn: newBatchConn(conn), tls: conn}, nil
}

// Allowed reports whether requests to host may leave.
func (e *Egress) Allowed(host string) bool {
	return e.allowed[strings.ToLower(host)]
}

// CloseIdleConnections closes idle connections of the shared transport.
func (e *Egress) CloseIdleConnections() { e.base.CloseIdleConnections() }

// String describes the egress path for people: the proxy (without
// credentials) or direct, the source address, the extra roots and the
// allowlist.
func (e *Egress) String() string {
	src := "the source address the OS picks"
	if e.source != "" {
		src = "source address " + e.source
	}
	roots := "system roots"
	if e.caFile != "" {
		roots += " + " + e.caFile
	}
	hosts := make([]string, 0, len(e.allowed))
	for h := range e.allowed {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	if len(hosts) == 0 {
		hosts = []string{"none"}
	}
	return fmt.Sprintf("%s, from %s, trusting %s, allowed hosts: %s",
		e.dial.proxy.describe(), src, roots, strings.Join(hosts, ", "))
}

type guard struct {
	e    *Egress
	next http.RoundTripper
}

func (g *guard) RoundTrip(r *http.Request) (*http.Response, error) {
	host := r.URL.Hostname()
	if !g.e.Allowed(host) {
		if r.Body != nil {
			r.Body.Close()
		}
		if g.e.onDenied != nil {
			g.e.onDenied(host)
		}
		return nil, hostNotAllowed(host)
	}
	resp, err := g.next.RoundTrip(r)
	if err != nil && AsMisconfig(err) == nil {
		// net/http's own TLS handshake with the target (the HTTP/2
		// transport's is classified as it dials).
		if me := targetMisconfig(err, host, r.URL.Host); me != nil {
			err = me
		}
	}
	g.e.recent.note(r.URL.Host, err) // host[:port]: two services may share a host
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pool.
func (g *guard) CloseIdleConnections() {
	if c, ok := g.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func rootPool(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("egress.ca_file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("egress.ca_file: %s holds no PEM certificate", caFile)
	}
	return pool, nil
}
