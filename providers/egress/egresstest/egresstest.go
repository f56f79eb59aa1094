// Package egresstest provides forward proxies for tests of the egress path:
// an HTTP CONNECT proxy (plain or over TLS, with or without Basic proxy
// authentication) and a SOCKS5 proxy (RFC 1928, with or without RFC 1929
// username/password authentication). They listen on 127.0.0.1, open
// tunnels to loopback addresses only (anything else is refused, so a test
// can never reach out), and record every request: the client's source
// address, the target, and whether the tunnel was opened.
//
// For tests only; it imports nothing of ours.
package egresstest

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
)

// Options configure a proxy.
type Options struct {
	// User and Password, when User is not empty, are the credentials the
	// proxy requires: Basic proxy auth for HTTP, RFC 1929 for SOCKS5.
	User, Password string
	// TLS, for the HTTP proxy only, makes it an https:// proxy.
	TLS *tls.Config
}

// Request is one tunnel a client asked for.
type Request struct {
	// Source is the client's IP address as the proxy saw it.
	Source string
	// Target is the host:port asked for; empty when the client was refused
	// before it could say (bad SOCKS5 credentials).
	Target string
	// Opened says whether the tunnel was opened.
	Opened bool
	// ALPN is, for a TLS proxy, the protocol negotiated with the client.
	ALPN string
}

// Proxy is a running forward proxy. It is safe for concurrent use.
type Proxy struct {
	ln     net.Listener // guarded by mu once Restart may run
	addr   string
	scheme string
	opts   Options

	mu      sync.Mutex
	reqs    []Request
	conns   map[net.Conn]struct{}
	done    bool // closed for good
	stopped bool // stopped until Restart
	wg      sync.WaitGroup
}

// NewHTTP starts an HTTP CONNECT proxy (https:// when opts.TLS is set). It
// answers 407 to a client without the right credentials, 403 to a target
// that is not on loopback, 502 when the target does not answer, and 405 to
// anything but CONNECT. tb's cleanup closes it.
func NewHTTP(tb testing.TB, opts Options) *Proxy {
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
	}
	return start(tb, scheme, opts)
}

// NewSOCKS5 starts a SOCKS5 proxy that serves CONNECT only. tb's cleanup
// closes it.
func NewSOCKS5(tb testing.TB, opts Options) *Proxy {
	return start(tb, "socks5", opts)
}

func start(tb testing.TB, scheme string, opts Options) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("egresstest: %v", err)
	}
	p := &Proxy{ln: ln, addr: ln.Addr().String(), scheme: scheme, opts: opts, conns: map[net.Conn]struct{}{}}
	p.wg.Go(func() { p.accept(ln) })
	tb.Cleanup(p.Close)
	return p
}

// URL returns the proxy's URL, with its credentials when it requires some.
func (p *Proxy) URL() string {
	user, pass := p.credentials()
	if user == "" {
		return p.URLWith(nil)
	}
	return p.URLWith(url.UserPassword(user, pass))
}

// URLWith returns the proxy's URL with the given credentials (nil: none).
func (p *Proxy) URLWith(user *url.Userinfo) string {
	return (&url.URL{Scheme: p.scheme, User: user, Host: p.addr}).String()
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// Requests returns the requests so far.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.reqs...)
}

// Tunnels returns how many tunnels were opened, to target when it is not
// empty.
func (p *Proxy) Tunnels(target string) int {
	n := 0
	for _, r := range p.Requests() {
		if r.Opened && (target == "" || r.Target == target) {
			n++
		}
	}
	return n
}

// Close stops the proxy and ends its tunnels.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return
	}
	p.done = true
	p.shutLocked()
}

// Stop stops the proxy as a restart does: the listener closes (new
// connections are refused) and every tunnel ends. Restart starts it again
// on the same address.
func (p *Proxy) Stop() {
	p.mu.Lock()
	if p.done || p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.shutLocked()
}

// shutLocked closes the listener and every tunnel, unlocks p.mu and waits
// for the proxy's goroutines to end.
func (p *Proxy) shutLocked() {
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Restart listens again, on the same address, after Stop.
func (p *Proxy) Restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || !p.stopped {
		return errors.New("egresstest: Restart of a proxy that is not stopped")
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.ln, p.stopped = ln, false
	p.wg.Go(func() { p.accept(ln) })
	return nil
}

// SetCredentials changes the credentials the proxy requires from now on;
// an empty user requires none.
func (p *Proxy) SetCredentials(user, password string) {
	p.mu.Lock()
	p.opts.User, p.opts.Password = user, password
	p.mu.Unlock()
}

// credentials are the credentials the proxy requires now.
func (p *Proxy) credentials() (user, password string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts.User, p.opts.Password
}

func (p *Proxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Go(func() {
			defer p.untrack(c)
			if p.scheme == "socks5" {
				p.serveSOCKS(c)
			} else {
				p.serveHTTP(c)
			}
		})
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || p.stopped {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) record(r Request) {
	p.mu.Lock()
	p.reqs = append(p.reqs, r)
	p.mu.Unlock()
}

func sourceOf(c net.Conn) string {
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return host
}

// dialLoopback connects to target if it is on loopback, and only then.
func (p *Proxy) dialLoopback(target string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return nil, err
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, errNotLoopback
	}
	c, err := net.Dial("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, err
	}
	if !p.track(c) {
		c.Close()
		return nil, errors.New("proxy closed")
	}
	return c, nil
}

var errNotLoopback = errors.New("egresstest: only loopback targets are allowed")

// pipe copies both ways until either side ends.
func (p *Proxy) pipe(client net.Conn, clientR io.Reader, upstream net.Conn) {
	defer p.untrack(upstream)
	done := make(chan struct{}, 2)
	go func() { io.Copy(upstream, clientR); done <- struct{}{} }()
	go func() { io.Copy(client, upstream); done <- struct{}{} }()
	<-done
	client.Close()
	upstream.Close()
	<-done
}

func (p *Proxy) serveHTTP(c net.Conn) {
	req := Request{Source: sourceOf(c)}
	if p.opts.TLS != nil {
		tc := tls.Server(c, p.opts.TLS)
		if err := tc.Handshake(); err != nil {
			return
		}
		req.ALPN = tc.ConnectionState().NegotiatedProtocol
		c = tc
	}
	br := bufio.NewReader(c)
	r, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	answer := func(status int, extra string) {
		io.WriteString(c, "HTTP/1.1 "+strconv.Itoa(status)+" "+http.StatusText(status)+"\r\n"+extra+"Content-Length: 0\r\nConnection: close\r\n\r\n")
	}
	if r.Method != http.MethodConnect {
		answer(http.StatusMethodNotAllowed, "")
		return
	}
	req.Target = r.Host
	if user, pass := p.credentials(); user != "" {
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
		if r.Header.Get("Proxy-Authorization") != want {
			p.record(req)
			answer(http.StatusProxyAuthRequired, "Proxy-Authenticate: Basic realm=\"egresstest\"\r\n")
			return
		}
	}
	up, err := p.dialLoopback(r.Host)
	switch {
	case errors.Is(err, errNotLoopback):
		p.record(req)
		answer(http.StatusForbidden, "")
		return
	case err != nil:
		p.record(req)
		answer(http.StatusBadGateway, "")
		return
	}
	req.Opened = true
	p.record(req)
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	p.pipe(c, br, up)
}

// SOCKS5 constants (RFC 1928, RFC 1929).
const (
	socksVersion       = 5
	socksNoAuth        = 0
	socksUserPass      = 2
	socksNoAcceptable  = 0xff
	socksCmdConnect    = 1
	socksAtypIPv4      = 1
	socksAtypDomain    = 3
	socksAtypIPv6      = 4
	socksOK            = 0
	socksNotAllowed    = 2
	socksRefused       = 5
	socksCmdNotSupport = 7
)

func (p *Proxy) serveSOCKS(c net.Conn) {
	req := Request{Source: sourceOf(c)}
	br := bufio.NewReader(c)
	head := make([]byte, 2)
	if _, err := io.ReadFull(br, head); err != nil || head[0] != socksVersion {
		return
	}
	methods := make([]byte, head[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return
	}
	wantUser, wantPass := p.credentials()
	want := byte(socksNoAuth)
	if wantUser != "" {
		want = socksUserPass
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == want
	}
	if !offered {
		p.record(req)
		c.Write([]byte{socksVersion, socksNoAcceptable})
		return
	}
	c.Write([]byte{socksVersion, want})
	if want == socksUserPass {
		user, pass, ok := readUserPass(br)
		if !ok || user != wantUser || pass != wantPass {
			p.record(req)
			c.Write([]byte{1, 1})
			return
		}
		c.Write([]byte{1, 0})
	}
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(br, hdr); err != nil || hdr[0] != socksVersion {
		return
	}
	var host string
	switch hdr[3] {
	case socksAtypIPv4, socksAtypIPv6:
		n := 4
		if hdr[3] == socksAtypIPv6 {
			n = 16
		}
		ip := make([]byte, n)
		if _, err := io.ReadFull(br, ip); err != nil {
			return
		}
		host = net.IP(ip).String()
	case socksAtypDomain:
		l, err := br.ReadByte()
		if err != nil {
			return
		}
		name := make([]byte, l)
		if _, err := io.ReadFull(br, name); err != nil {
			return
		}
		host = string(name)
	default:
		return
	}
	port := make([]byte, 2)
	if _, err := io.ReadFull(br, port); err != nil {
		return
	}
	req.Target = net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port))))
	reply := func(code byte) { c.Write([]byte{socksVersion, code, 0, socksAtypIPv4, 0, 0, 0, 0, 0, 0}) }
	if hdr[1] != socksCmdConnect {
		p.record(req)
		reply(socksCmdNotSupport)
		return
	}
	up, err := p.dialLoopback(req.Target)
	switch {
	case errors.Is(err, errNotLoopback):
		p.record(req)
		reply(socksNotAllowed)
		return
	case err != nil:
		p.record(req)
		reply(socksRefused)
		return
	}
	req.Opened = true
	p.record(req)
	reply(socksOK)
	p.pipe(c, br, up)
}

// readUserPass reads an RFC 1929 username/password request.
func readUserPass(br *bufio.Reader) (user, pass string, ok bool) {
	field := func() (string, bool) {
		l, err := br.ReadByte()
		if err != nil {
			return "", false
		}
		b := make([]byte, l)
		if _, err := io.ReadFull(br, b); err != nil {
			return "", false
		}
		return string(b), true
	}
	if v, err := br.ReadByte(); err != nil || v != 1 {
		return "", "", false
	}
	if user, ok = field(); !ok {
		return "", "", false
	}
	pass, ok = field()
	return user, pass, ok
}
