package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

// probeTimeout bounds the probe of one target, its checks included.
const probeTimeout = 45 * time.Second

// Target is a host the relay must reach, and what proves the way works.
type Target struct {
	// Host is the host name (or IP) as the endpoint URL has it.
	Host string
	// Port is the TCP port, e.g. 443.
	Port int
	// Plain marks a plain-HTTP endpoint (an http:// upstream): no TLS to
	// check.
	Plain bool
	// NeedH2 requires ALPN to select HTTP/2, as APNs does (and the relay
	// for FCM).
	NeedH2 bool
	// Checks run, in order, once the way through TLS works.
	Checks []Check
}

// Check is an authenticated no-op through the egress path, such as
// fetching an OAuth token with the app's credentials.
type Check struct {
	// Name says what a success proves; it is the step's name in the report.
	Name string
	// Run does it, and says what it saw. Neither may hold a secret.
	Run func(ctx context.Context) (detail string, err error)
	// Fix says what to change when Run fails.
	Fix string
}

// Result is what Probe found for one Target.
type Result struct {
	Target Target
	// Path is how the host is reached, e.g. "direct from 10.0.0.5" or
	// "via http://proxy:3128 (CONNECT) from 10.0.0.5". It never shows
	// proxy credentials.
	Path string
	// Steps are the checks made, in order; when Err is not nil, the last
	// one failed.
	Steps []Step
	// Err is the first failure, nil when every step passed.
	Err error
	// Fix says what to open or change, when Err is not nil.
	Fix string
}

// Step is one check of a Result.
type Step struct {
	// Name is allowlist, dns, tcp, proxy, proxy-tls, connect, socks, tls,
	// alpn, or a Check's Name.
	Name string
	// OK says whether it passed.
	OK bool
	// Detail is what was seen, or the error.
	Detail string
}

// Probe checks, for each target at once, that it can be reached the way
// the transports reach it: the allowlist; then directly, DNS and the TCP
// connection from the source address, or through the proxy, the
// connection to it (and TLS with an https:// proxy) and the CONNECT or
// SOCKS5 tunnel; then the TLS handshake and certificate verification
// against the system roots and egress.ca_file, ALPN (h2 when NeedH2), and
// the target's Checks. Results are in the order of targets.
func (e *Egress) Probe(ctx context.Context, targets []Target) []Result {
	results := make([]Result, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { results[i] = e.probe(ctx, t) })
	}
	wg.Wait()
	return results
}

// probeRun is the probe of one target in progress.
type probeRun struct {
	e    *Egress
	t    Target
	addr string // host:port
	res  Result
}

func (r *probeRun) pass(name, format string, args ...any) {
	r.res.Steps = append(r.res.Steps, Step{Name: name, OK: true, Detail: fmt.Sprintf(format, args...)})
}

// fail records the failed step and ends the probe with fix.
func (r *probeRun) fail(name string, err error, fix string) Result {
	r.res.Steps = append(r.res.Steps, Step{Name: name, Detail: err.Error()})
	r.res.Err = fmt.Errorf("%s: %s: %w", r.addr, name, err)
	r.res.Fix = fix
	return r.res
}

func (e *Egress) probe(ctx context.Context, t Target) Result {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	r := &probeRun{e: e, t: t, addr: net.JoinHostPort(t.Host, strconv.Itoa(t.Port))}
	r.res.Target = t
	if !e.Allowed(t.Host) {
		r.res.Path = "-"
		me := hostNotAllowed(t.Host)
		return r.fail("allowlist", fmt.Errorf("%s: %w", t.Host, ErrHostNotAllowed), me.Fix)
	}
	r.pass("allowlist", "%s is in egress.allowed_hosts", t.Host)

	p, err := e.dial.proxy.forAddr(r.addr)
	if err != nil {
		r.res.Path = "-"
		return r.fail("proxy", err, "correct egress.proxy, or HTTPS_PROXY in the environment")
	}
	var conn net.Conn
	var done bool
	if p == nil {
		conn, done = r.direct(ctx)
	} else {
		conn, done = r.viaProxy(ctx, p)
	}
	if done {
		return r.res
	}
	if t.Plain {
		r.pass("tls", "none: plain HTTP")
	} else {
		done = r.handshake(ctx, conn)
	}
	// The checks make their own connections, through the transports.
	conn.Close()
	if done {
		return r.res
	}
	for _, c := range t.Checks {
		detail, err := c.Run(ctx)
		if err != nil {
			return r.fail(c.Name, err, or(c.Fix, "see the error of "+c.Name))
		}
		r.pass(c.Name, "%s", or(detail, "ok"))
	}
	return r.res
}

// sourceFor names where connections leave from, for a fix: the configured
// source address, else the one the OS would pick to reach ip (a UDP
// "connection" sends nothing), else "this host".
func (e *Egress) sourceFor(ip net.IP) string {
	if e.source != "" {
		return e.source
	}
	if ip != nil {
		if c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: ip, Port: 443}); err == nil {
			defer c.Close()
			return c.LocalAddr().(*net.UDPAddr).IP.String()
		}
	}
	return "this host"
}

// localIP is the local IP of conn.
func localIP(conn net.Conn) string {
	if a, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return conn.LocalAddr().String()
}

// direct resolves the target and connects to it. done is true when a step
// failed.
func (r *probeRun) direct(ctx context.Context) (conn net.Conn, done bool) {
	e, t := r.e, r.t
	r.res.Path = "direct"
	if e.source != "" {
		r.res.Path = "direct from " + e.source
	}
	var first net.IP
	if ip := net.ParseIP(t.Host); ip != nil {
		first = ip
		r.pass("dns", "none needed: %s is an IP address", t.Host)
	} else {
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, t.Host)
		if err != nil {
			r.fail("dns", err, fmt.Sprintf("make %s resolvable from this host (DNS), or reach it through a proxy (egress.proxy)", t.Host))
			return nil, true
		}
		ips := make([]string, 0, len(addrs))
		for _, a := range addrs {
			ips = append(ips, a.IP.String())
		}
		first = addrs[0].IP
		r.pass("dns", "%s", strings.Join(ips, ", "))
	}
	start := time.Now()
	conn, err := e.dial.direct.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		src := e.sourceFor(first)
		fix := fmt.Sprintf("allow TCP %d from %s to %s on the firewall", t.Port, src, t.Host)
		if errors.Is(err, syscall.ECONNREFUSED) {
			fix = fmt.Sprintf("nothing accepted the connection at %s: check the endpoint in the config, and allow TCP %d from %s to %s on the firewall",
				r.addr, t.Port, src, t.Host)
		}
		if errors.Is(err, syscall.EADDRNOTAVAIL) && e.source != "" {
			fix = fmt.Sprintf("egress.source_address %s is not an address of this host: use one it has", e.source)
		}
		r.fail("tcp", err, fix)
		return nil, true
	}
	r.res.Path = "direct from " + localIP(conn)
	r.pass("tcp", "connected to %s from %s in %v", conn.RemoteAddr(), conn.LocalAddr(), time.Since(start).Round(100*time.Microsecond))
	return conn, false
}

// viaProxy connects to the proxy and opens the tunnel to the target. done
// is true when a step failed.
func (r *probeRun) viaProxy(ctx context.Context, p *url.URL) (conn net.Conn, done bool) {
	e, t := r.e, r.t
	proxyName := redact(p)
	r.res.Path = fmt.Sprintf("via %s (%s)", proxyName, tunnelKind(p))
	if e.dial.proxy.fixed == nil {
		r.res.Path += " from HTTPS_PROXY"
	}
	if net.ParseIP(t.Host) != nil {
		r.pass("dns", "none needed: %s is an IP address", t.Host)
	} else {
		r.pass("dns", "left to the proxy: it resolves %s", t.Host)
	}

	hctx, cancel := context.WithTimeout(ctx, proxyHandshakeTimeout)
	defer cancel()
	start := time.Now()
	conn, err := e.dial.dialProxy(hctx, p)
	if err != nil {
		if e.source != "" {
			r.res.Path += " from " + e.source
		}
		var pe *proxyError
		var dnsErr *net.DNSError
		step, fix := stepProxyDial, ""
		switch {
		case errors.As(err, &pe) && pe.step == stepProxyTLS:
			step, fix = stepProxyTLS, proxyTLSFix(err, p, r.addr)
		case errors.As(err, &dnsErr):
			fix = fmt.Sprintf("the proxy's host %s does not resolve: correct egress.proxy", p.Hostname())
		case errors.Is(err, syscall.EADDRNOTAVAIL) && e.source != "":
			fix = fmt.Sprintf("egress.source_address %s is not an address of this host: use one it has", e.source)
		default:
			port := proxyAddr(p)[strings.LastIndex(proxyAddr(p), ":")+1:]
			fix = fmt.Sprintf("allow TCP %s from %s to the proxy %s on the firewall, or correct egress.proxy",
				port, e.sourceFor(net.ParseIP(p.Hostname())), p.Hostname())
			if errors.Is(err, syscall.ECONNREFUSED) {
				fix = fmt.Sprintf("nothing accepted the connection at %s: check that the proxy runs there and that egress.proxy names its address and port, "+
					"and that no firewall rejects TCP %s from %s to the proxy %s", proxyAddr(p), port, e.sourceFor(net.ParseIP(p.Hostname())), p.Hostname())
			}
		}
		r.fail(step, err, fix)
		return nil, true
	}
	src := localIP(conn)
	r.res.Path += " from " + src
	r.pass(stepProxyDial, "connected to %s from %s in %v", conn.RemoteAddr(), conn.LocalAddr(), time.Since(start).Round(100*time.Microsecond))
	if tc, ok := conn.(*tls.Conn); ok {
		r.pass(stepProxyTLS, "%s, the proxy's certificate is verified", tlsSummary(tc.ConnectionState()))
	}

	tun, err := tunnel(hctx, conn, p, r.addr)
	if err != nil {
		conn.Close()
		step := stepConnect
		if p.Scheme == "socks5" || p.Scheme == "socks5h" {
			step = stepSOCKS
		}
		r.fail(step, err, tunnelFix(err, p, t, src))
		return nil, true
	}
	if p.Scheme == "socks5" || p.Scheme == "socks5h" {
		r.pass(stepSOCKS, "tunnel to %s open", r.addr)
	} else {
		r.pass(stepConnect, "200: tunnel to %s open", r.addr)
	}
	return tun, false
}

// proxyTLSFix says what to do about a failed TLS handshake with an
// https:// proxy: what the live path says of the same failure (see
// proxyMisconfig), else a guess.
func proxyTLSFix(err error, p *url.URL, target string) string {
	if me := proxyMisconfig(err, p, target, ""); me != nil {
		return me.Fix
	}
	return "TLS with the proxy failed: if it is a plain HTTP proxy, write http:// in egress.proxy"
}

// tunnelFix says what to do about a refused CONNECT or SOCKS5 tunnel: what
// the live path says of a misconfiguration (see proxyMisconfig), else
// what to open for a proxy that could not do it.
func tunnelFix(err error, p *url.URL, t Target, src string) string {
	var pe *proxyError
	if !errors.As(err, &pe) {
		return "check egress.proxy"
	}
	if me := proxyMisconfig(err, p, net.JoinHostPort(t.Host, strconv.Itoa(t.Port)), src); me != nil {
		if pe.status != 0 {
			return fmt.Sprintf("proxy refused CONNECT: %d, %s", pe.status, me.Fix)
		}
		return me.Fix
	}
	if pe.step == stepSOCKS {
		return fmt.Sprintf("the SOCKS5 proxy could not or would not connect to %s:%d: allow it in the proxy's rules, and TCP %d from the proxy to %s on the firewall",
			t.Host, t.Port, t.Port, t.Host)
	}
	switch {
	case pe.status == http.StatusBadGateway || pe.status == http.StatusServiceUnavailable || pe.status == http.StatusGatewayTimeout:
		return fmt.Sprintf("the proxy could not reach %s:%d (%d): allow TCP %d from the proxy to %s on the firewall, and check that the proxy resolves it",
			t.Host, t.Port, pe.status, t.Port, t.Host)
	case pe.status != 0:
		return fmt.Sprintf("proxy refused CONNECT: %d, allow CONNECT to %s:%d from %s in the proxy's rules", pe.status, t.Host, t.Port, src)
	}
	return "the proxy broke off the CONNECT: check that egress.proxy is an HTTP proxy that allows CONNECT"
}

// handshake does the target's TLS handshake on conn as the transports do,
// offering h2 and HTTP/1.1, and checks ALPN. done is true when a step
// failed.
func (r *probeRun) handshake(ctx context.Context, conn net.Conn) (done bool) {
	t := r.t
	tc := tls.Client(conn, &tls.Config{
		RootCAs:    r.e.roots,
		ServerName: t.Host,
		MinVersion: tls.VersionTLS12,
		// HTTP/1.1 too, so a middlebox without h2 shows as such rather
		// than as a failed handshake.
		NextProtos: []string{"h2", "http/1.1"},
	})
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		r.fail("tls", err, r.tlsFix(err))
		return true
	}
	cs := tc.ConnectionState()
	r.pass("tls", "%s, certificate verified against the system roots%s", tlsSummary(cs), r.caNote())
	switch proto := cs.NegotiatedProtocol; {
	case proto == "h2":
		r.pass("alpn", "h2")
	case t.NeedH2:
		got := "no protocol"
		if proto != "" {
			got = proto
		}
		r.fail("alpn", fmt.Errorf("the server chose %s, not h2", got), noH2(t.Host, r.addr, proto).Fix)
		return true
	default:
		r.pass("alpn", "%s (HTTP/2 not offered; enough for this host)", or(proto, "HTTP/1.1"))
	}
	return false
}

func (r *probeRun) caNote() string {
	if r.e.caFile == "" {
		return ""
	}
	return " and egress.ca_file"
}

// tlsFix says what to do about a failed TLS handshake with the target:
// what the live path says of the same failure (see targetMisconfig), else
// a guess.
func (r *probeRun) tlsFix(err error) string {
	if me := targetMisconfig(err, r.t.Host, r.addr); me != nil {
		return me.Fix
	}
	return fmt.Sprintf("the TLS handshake with %s failed: let TLS to %s:%d through untouched", r.t.Host, r.t.Host, r.t.Port)
}

// tlsSummary is "TLS 1.3, certificate for X issued by Y".
func tlsSummary(cs tls.ConnectionState) string {
	s := tls.VersionName(cs.Version)
	if len(cs.PeerCertificates) > 0 {
		c := cs.PeerCertificates[0]
		name := c.Subject.CommonName
		if len(c.DNSNames) > 0 {
			name = c.DNSNames[0]
		}
		issuer := c.Issuer.CommonName
		if issuer == "" && len(c.Issuer.Organization) > 0 {
			issuer = c.Issuer.Organization[0]
		}
		s += fmt.Sprintf(", certificate for %s issued by %q", or(name, "?"), issuer)
	}
	return s
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// WriteReport writes results for the network team: a table of host, port,
// path, result and what to open or change, then every step of every host.
// It shows no secret: proxy URLs appear without credentials.
func WriteReport(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tPORT\tPATH\tRESULT\tTO FIX")
	for _, r := range results {
		result, fix := "ok", "-"
		if r.Err != nil {
			result, fix = "FAIL", or(r.Fix, "-")
			if len(r.Steps) > 0 {
				result += " at " + r.Steps[len(r.Steps)-1].Name
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", r.Target.Host, r.Target.Port, r.Path, result, fix)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		fmt.Fprintf(w, "\n%s:%d\n", r.Target.Host, r.Target.Port)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, s := range r.Steps {
			mark := "ok"
			if !s.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", mark, s.Name, strings.ReplaceAll(s.Detail, "\n", " "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
