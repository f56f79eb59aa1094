package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/net/http/httpproxy"
	"golang.org/x/net/proxy"
)

// proxyHandshakeTimeout bounds what follows the TCP connect to a proxy: the
// TLS handshake with an https:// proxy and the CONNECT or SOCKS exchange.
const proxyHandshakeTimeout = 30 * time.Second

// maxConnectHeader bounds the proxy's answer to CONNECT.
const maxConnectHeader = 64 << 10

// proxySelector decides, per connection, whether it goes direct or through
// a proxy: egress.proxy when set, else HTTPS_PROXY and NO_PROXY as they were
// when the egress was built.
type proxySelector struct {
	fixed *url.URL                         // egress.proxy; nil when empty
	env   *httpproxy.Config                // the environment, when egress.proxy is empty
	envFn func(*url.URL) (*url.URL, error) // env.ProxyFunc()
}

func newProxySelector(raw string, env *httpproxy.Config) (*proxySelector, error) {
	if raw == "" {
		if env == nil {
			env = &httpproxy.Config{}
		}
		return &proxySelector{env: env, envFn: env.ProxyFunc()}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the input, which may hold a password.
		return nil, errors.New("egress.proxy: not a valid URL")
	}
	if err := checkProxyURL(u); err != nil {
		return nil, fmt.Errorf("egress.proxy: %w", err)
	}
	return &proxySelector{fixed: u}, nil
}

func checkProxyURL(u *url.URL) error {
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
	default:
		return fmt.Errorf("scheme %q is not supported (use http, https or socks5)", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("the URL has no host")
	}
	return nil
}

// forAddr returns the proxy for a connection to addr (host:port), or nil
// when it goes direct.
func (s *proxySelector) forAddr(addr string) (*url.URL, error) {
	if s.fixed != nil {
		return s.fixed, nil
	}
	// The scheme only picks HTTPS_PROXY over HTTP_PROXY: every connection
	// the relay makes is a TLS connection, or tunnelled as one.
	u, err := s.envFn(&url.URL{Scheme: "https", Host: addr})
	if err != nil {
		// httpproxy quotes the variable, which may hold a password.
		return nil, errors.New("egress: HTTPS_PROXY (from the environment) is not a valid proxy URL; set egress.proxy instead")
	}
	if u == nil {
		return nil, nil
	}
	if err := checkProxyURL(u); err != nil {
		return nil, fmt.Errorf("egress: HTTPS_PROXY (from the environment): %w", err)
	}
	return u, nil
}

// describe says where the selector's proxies come from, without
// credentials.
func (s *proxySelector) describe() string {
	switch {
	case s.fixed != nil:
		return "through " + redact(s.fixed) + " (egress.proxy)"
	case s.env.HTTPSProxy != "":
		d := "through " + redactRaw(s.env.HTTPSProxy) + " (HTTPS_PROXY from the environment"
		if s.env.NoProxy != "" {
			d += "; NO_PROXY=" + s.env.NoProxy
		}
		return d + ")"
	}
	return "direct (no egress.proxy, no HTTPS_PROXY)"
}

// redact shows a proxy URL as scheme://host[:port]: never its user or
// password.
func redact(u *url.URL) string {
	return u.Scheme + "://" + u.Host
}

// redactRaw is redact for a URL from the environment, which may lack its
// scheme (as httpproxy allows).
func redactRaw(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		if u, err = url.Parse("http://" + raw); err != nil {
			return "(not a valid URL)"
		}
	}
	return redact(u)
}

// proxyAddr is the proxy's host:port, with the scheme's default port.
func proxyAddr(u *url.URL) string {
	if port := u.Port(); port != "" {
		return net.JoinHostPort(u.Hostname(), port)
	}
	port := "80"
	switch u.Scheme {
	case "https":
		port = "443"
	case "socks5", "socks5h":
		port = "1080"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// tunnelKind names how a proxy carries a connection, for the check's table.
func tunnelKind(u *url.URL) string {
	switch u.Scheme {
	case "socks5", "socks5h":
		return "SOCKS5"
	case "https":
		return "TLS, CONNECT"
	}
	return "CONNECT"
}

// dialer makes every outbound TCP connection of the egress: direct, or
// through the proxy (TCP to the proxy, TLS with it for https://, then a
// CONNECT or SOCKS5 tunnel to the target), always from the source address.
// The transports above it see a plain connection to the target and do the
// target's TLS themselves, so HTTP/2 works through every kind of proxy.
type dialer struct {
	direct   *net.Dialer // LocalAddr = egress.source_address
	proxy    *proxySelector
	proxyTLS *tls.Config // for https:// proxies: the egress roots, HTTP/1.1 only
}

// DialContext connects to addr (host:port) the way the egress is
// configured. It is the transports' DialContext.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := d.dialRaw(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return newBatchConn(conn), nil
}

// dialRaw is DialContext without the batching of writes.
func (d *dialer) dialRaw(ctx context.Context, network, addr string) (net.Conn, error) {
	p, err := d.proxy.forAddr(addr)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return d.direct.DialContext(ctx, network, addr)
	}
	ctx, cancel := context.WithTimeout(ctx, proxyHandshakeTimeout)
	defer cancel()
	conn, err := d.dialProxy(ctx, p)
	if err != nil {
		return nil, misconfigOr(err, p, addr, "")
	}
	tun, err := tunnel(ctx, conn, p, addr)
	if err != nil {
		src := localIP(conn)
		conn.Close()
		return nil, misconfigOr(err, p, addr, src)
	}
	return tun, nil
}

// misconfigOr returns the MisconfigError that err, a failure on the way
// through proxy p to target, shows, or err itself when the proxy may only
// be down.
func misconfigOr(err error, p *url.URL, target, src string) error {
	if me := proxyMisconfig(err, p, target, src); me != nil {
		return me
	}
	return err
}

// dialProxy connects to the proxy from the source address, and for an
// https:// proxy does the TLS handshake with it, offering only HTTP/1.1:
// CONNECT is an HTTP/1.1 request.
func (d *dialer) dialProxy(ctx context.Context, p *url.URL) (net.Conn, error) {
	conn, err := d.direct.DialContext(ctx, "tcp", proxyAddr(p))
	if err != nil {
		return nil, &proxyError{step: stepProxyDial, proxy: redact(p), err: err}
	}
	if p.Scheme != "https" {
		return conn, nil
	}
	cfg := d.proxyTLS.Clone()
	cfg.ServerName = p.Hostname()
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, &proxyError{step: stepProxyTLS, proxy: redact(p), err: err}
	}
	return tc, nil
}

// tunnel asks the proxy on conn for a tunnel to target (host:port) and
// returns the connection that carries it.
func tunnel(ctx context.Context, conn net.Conn, p *url.URL, target string) (net.Conn, error) {
	if p.Scheme == "socks5" || p.Scheme == "socks5h" {
		return socksConnect(ctx, conn, p, target)
	}
	return httpConnect(ctx, conn, p, target)
}

// httpConnect sends CONNECT target, with Basic proxy credentials from p,
// and reads the answer.
func httpConnect(ctx context.Context, conn net.Conn, p *url.URL, target string) (net.Conn, error) {
	fail := func(status int, err error) error {
		return &proxyError{step: stepConnect, proxy: redact(p), target: target, status: status, auth: p.User != nil, err: err}
	}
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: target},
		Host:   target,
		Header: http.Header{},
	}
	if p.User != nil {
		pass, _ := p.User.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(p.User.Username() + ":" + pass))
		req.Header.Set("Proxy-Authorization", "Basic "+cred)
	}
	// The context ends the exchange by expiring the connection's deadline.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	err := req.Write(conn)
	var resp *http.Response
	br := bufio.NewReader(io.LimitReader(conn, maxConnectHeader))
	if err == nil {
		resp, err = http.ReadResponse(br, req)
	}
	if !stop() {
		return nil, fail(0, ctx.Err())
	}
	if err != nil {
		return nil, fail(0, err)
	}
	// The body of a refusal is not read: the connection is closed anyway.
	if resp.StatusCode != http.StatusOK {
		return nil, fail(resp.StatusCode, errors.New(resp.Status))
	}
	conn.SetDeadline(time.Time{})
	if n := br.Buffered(); n > 0 {
		// The target spoke before the client (it should not): keep it.
		early, _ := br.Peek(n)
		return &prefixConn{Conn: conn, prefix: early}, nil
	}
	return conn, nil
}

// socksConnect opens a SOCKS5 tunnel (RFC 1928) to target on conn, with
// username/password authentication (RFC 1929) when p carries credentials.
// The proxy resolves the target's name (socks5 and socks5h alike).
func socksConnect(ctx context.Context, conn net.Conn, p *url.URL, target string) (net.Conn, error) {
	var auth *proxy.Auth
	if p.User != nil {
		pass, _ := p.User.Password()
		auth = &proxy.Auth{User: p.User.Username(), Password: pass}
	}
	d, err := proxy.SOCKS5("tcp", proxyAddr(p), auth, nil)
	if err != nil {
		return nil, &proxyError{step: stepSOCKS, proxy: redact(p), target: target, auth: auth != nil, err: err}
	}
	sd, ok := d.(interface {
		DialWithConn(ctx context.Context, c net.Conn, network, address string) (net.Addr, error)
	})
	if !ok {
		return nil, errors.New("egress: golang.org/x/net/proxy cannot open a SOCKS5 tunnel on a given connection")
	}
	if _, err := sd.DialWithConn(ctx, conn, "tcp", target); err != nil {
		return nil, &proxyError{step: stepSOCKS, proxy: redact(p), target: target, auth: auth != nil, err: err}
	}
	return conn, nil
}

// prefixConn replays bytes read ahead of the tunnel's start.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// Steps on the way through a proxy, as proxyError names them.
const (
	stepProxyDial = "proxy"
	stepProxyTLS  = "proxy-tls"
	stepConnect   = "connect"
	stepSOCKS     = "socks"
)

// proxyError is a failure on the way through a proxy. Its text names the
// proxy without credentials and says what to check.
type proxyError struct {
	step   string
	proxy  string // redacted
	target string // host:port
	status int    // the proxy's answer to CONNECT, when it gave one
	auth   bool   // whether credentials were sent
	err    error
}

func (e *proxyError) Error() string {
	switch e.step {
	case stepProxyDial:
		return fmt.Sprintf("egress: cannot reach the proxy %s: %v", e.proxy, e.err)
	case stepProxyTLS:
		return fmt.Sprintf("egress: TLS with the proxy %s: %v", e.proxy, e.err)
	case stepSOCKS:
		return fmt.Sprintf("egress: SOCKS5 proxy %s: tunnel to %s: %v", e.proxy, e.target, e.err)
	}
	switch {
	case e.status == http.StatusProxyAuthRequired && e.auth:
		return fmt.Sprintf("egress: proxy %s refused CONNECT to %s: %v (check the user and password in egress.proxy)", e.proxy, e.target, e.err)
	case e.status == http.StatusProxyAuthRequired:
		return fmt.Sprintf("egress: proxy %s refused CONNECT to %s: %v (it wants credentials: http://user:password@host:port in egress.proxy)", e.proxy, e.target, e.err)
	case e.status != 0:
		return fmt.Sprintf("egress: proxy %s refused CONNECT to %s: %v", e.proxy, e.target, e.err)
	}
	return fmt.Sprintf("egress: CONNECT to %s through the proxy %s: %v", e.target, e.proxy, e.err)
}

func (e *proxyError) Unwrap() error { return e.err }
