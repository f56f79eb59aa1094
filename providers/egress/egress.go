// Package egress builds the one outbound HTTP transport every provider uses:
// the configured forward proxy (or HTTPS_PROXY), the allowlisted source
// address, extra trusted roots, and a host allowlist enforced before any
// connection is made.
package egress

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config is the `egress` section of the relay's configuration.
type Config struct {
	// Proxy is the forward proxy URL (http://, https:// or socks5://, with
	// optional user:password). Empty means HTTPS_PROXY/HTTP_PROXY/NO_PROXY
	// from the environment.
	Proxy string `yaml:"proxy"`
	// SourceAddress binds every outbound connection to this local IP.
	SourceAddress string `yaml:"source_address"`
	// CAFile holds extra PEM roots trusted on top of the system's.
	CAFile string `yaml:"ca_file"`
	// AllowedHosts are the only hosts requests may go to. Empty means the
	// hosts the configured apps need (the relay computes that list).
	AllowedHosts []string `yaml:"allowed_hosts"`
}

// Egress is the shared outbound path. It is safe for concurrent use.
type Egress struct {
	base     *http.Transport
	allowed  map[string]bool
	onDenied func(host string)
}

// ErrHostNotAllowed is returned (wrapped) for a request to a host outside the
// allowlist. No connection is attempted.
var ErrHostNotAllowed = errors.New("host is not in egress.allowed_hosts")

// New builds the egress path from cfg. defaultHosts is the allowlist used
// when cfg.AllowedHosts is empty: the hosts the configured apps need.
// onDenied, if not nil, is called with the host of every refused request.
// Errors name the config key at fault.
func New(cfg Config, defaultHosts []string, onDenied func(host string)) (*Egress, error) {
	proxy, err := proxyFunc(cfg.Proxy)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if cfg.SourceAddress != "" {
		ip := net.ParseIP(cfg.SourceAddress)
		if ip == nil {
			return nil, fmt.Errorf("egress.source_address: %q is not an IP address", cfg.SourceAddress)
		}
		dialer.LocalAddr = &net.TCPAddr{IP: ip}
	}
	roots, err := rootPool(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	t := &http.Transport{
		Proxy:                 proxy,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 15 * time.Second,
			PingTimeout:     10 * time.Second,
		},
	}
	hosts := cfg.AllowedHosts
	if len(hosts) == 0 {
		hosts = defaultHosts
	}
	allowed := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		allowed[strings.ToLower(h)] = true
	}
	return &Egress{base: t, allowed: allowed, onDenied: onDenied}, nil
}

// Transport returns the shared transport, HTTP/1.1 or HTTP/2 as the server
// offers, behind the host allowlist.
func (e *Egress) Transport() http.RoundTripper {
	return &guard{e: e, next: e.base}
}

// HTTP2Transport returns a transport of its own that speaks only HTTP/2 over
// TLS (what APNs requires), presenting cert when it is not nil, behind the
// host allowlist. Each call makes a new connection pool: call it once per
// app and share the result.
func (e *Egress) HTTP2Transport(cert *tls.Certificate) http.RoundTripper {
	t := e.base.Clone()
	if cert != nil {
		t.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP2(true)
	return &guard{e: e, next: t}
}

// Allowed reports whether requests to host may leave.
func (e *Egress) Allowed(host string) bool {
	return e.allowed[strings.ToLower(host)]
}

// CloseIdleConnections closes idle connections of the shared transport.
func (e *Egress) CloseIdleConnections() { e.base.CloseIdleConnections() }

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
		return nil, fmt.Errorf("egress to %s refused: %w", host, ErrHostNotAllowed)
	}
	return g.next.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pool.
func (g *guard) CloseIdleConnections() {
	if c, ok := g.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func proxyFunc(raw string) (func(*http.Request) (*url.URL, error), error) {
	if raw == "" {
		return http.ProxyFromEnvironment, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the input, which may hold a password.
		return nil, errors.New("egress.proxy: not a valid URL")
	}
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
	default:
		return nil, fmt.Errorf("egress.proxy: scheme %q is not supported (use http, https or socks5)", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("egress.proxy: the URL has no host")
	}
	return http.ProxyURL(u), nil
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
