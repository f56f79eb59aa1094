package egress

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// ErrMisconfigured is matched (errors.Is) by every failure of the egress
// path that waiting cannot fix: the proxy refuses the credentials or the
// target, its certificate or the target's is not trusted or is for another
// name, the target does not speak HTTP/2 where it must, or the host is not
// in egress.allowed_hosts. A proxy or target that is down, restarting or
// slow (connection refused or reset, 502/503 from the proxy, a timeout) is
// not misconfigured. The error is a *MisconfigError.
var ErrMisconfigured = errors.New("egress is misconfigured")

// Reasons of a MisconfigError: a fixed vocabulary, safe for a metric label.
const (
	// ReasonProxyAuth: the proxy refused the credentials of egress.proxy,
	// or their lack (HTTP 407, SOCKS5 authentication refused or no
	// acceptable method).
	ReasonProxyAuth = "proxy_auth"
	// ReasonProxyRefused: the proxy refused the tunnel to the target by
	// its rules (HTTP 403 or another 4xx to CONNECT, SOCKS5 "not allowed by
	// ruleset").
	ReasonProxyRefused = "proxy_refused"
	// ReasonProxyTLS: TLS with an https:// proxy failed for a reason of
	// configuration: its certificate is not trusted, not valid or for
	// another name, or it does not speak TLS at all.
	ReasonProxyTLS = "proxy_tls"
	// ReasonTLSUntrusted: the target's certificate is not trusted (a
	// TLS-inspecting proxy re-signs it) or not valid.
	ReasonTLSUntrusted = "tls_untrusted"
	// ReasonTLSName: the target's certificate is for another name.
	ReasonTLSName = "tls_name"
	// ReasonNoH2: the target, or what answers in its place, did not select
	// HTTP/2 by ALPN where it is required.
	ReasonNoH2 = "no_h2"
	// ReasonHostNotAllowed: the host is not in egress.allowed_hosts.
	ReasonHostNotAllowed = "host_not_allowed"
	// ReasonWrongEndpoint: the endpoint answered a refusal (a 4xx) that is
	// not the provider's: its URL is wrong, or a reverse proxy or gateway in
	// front of the provider answers in its place (see NotProvider).
	ReasonWrongEndpoint = "wrong_endpoint"
)

// MisconfigReasons lists every MisconfigError.Reason.
func MisconfigReasons() []string {
	return []string{ReasonProxyAuth, ReasonProxyRefused, ReasonProxyTLS, ReasonTLSUntrusted, ReasonTLSName, ReasonNoH2,
		ReasonHostNotAllowed, ReasonWrongEndpoint}
}

// NotProvider is the MisconfigError of a refusal (HTTP status, a 4xx)
// from host that is not the provider's own: its body lacks the provider's
// error format. provider names it ("APNs"), key the config key of the
// endpoint ("apps[].apns.endpoint"); answer, when not empty, quotes the
// start of the body (bounded, without the device token). A probe cannot
// tell when it is fixed (the way itself works): it has no Target.
func NotProvider(provider string, status int, host, key, answer string) *MisconfigError {
	what := fmt.Sprintf("%s answered HTTP %d, not as %s does", host, status, provider)
	if answer != "" {
		what += " (" + answer + ")"
	}
	return &MisconfigError{
		Reason: ReasonWrongEndpoint,
		What:   what,
		Fix:    fmt.Sprintf("a wrong URL, or a reverse proxy or gateway answers in its place: check %s and that proxy's routes", key),
		Err:    fmt.Errorf("HTTP %d", status),
	}
}

// MisconfigError is a failure of the egress path that only a change of
// configuration (egress.proxy, egress.ca_file, egress.allowed_hosts, or
// the network's own) can fix. Its text names the proxy (never its
// credentials) or the host, and says what to fix.
type MisconfigError struct {
	// Reason is one of the Reason constants.
	Reason string
	// What says what happened, e.g. "proxy http://proxy:3128 refused
	// CONNECT to api.push.apple.com:443 with 407 Proxy Authentication
	// Required".
	What string
	// Fix says what to change, e.g. "check the user and password in
	// egress.proxy".
	Fix string
	// Err is the underlying failure.
	Err error
	// Target is the host:port (or host) the request was for, when known:
	// what a probe dials to see whether the problem is gone.
	Target string
}

// Error is "egress misconfigured: <what>: <fix>".
func (e *MisconfigError) Error() string {
	return "egress misconfigured: " + e.What + ": " + e.Fix
}

// Unwrap returns the underlying failure.
func (e *MisconfigError) Unwrap() error { return e.Err }

// Is makes every MisconfigError match ErrMisconfigured.
func (e *MisconfigError) Is(target error) bool { return target == ErrMisconfigured }

// AsMisconfig returns the MisconfigError in err's chain, or nil.
func AsMisconfig(err error) *MisconfigError {
	var me *MisconfigError
	if errors.As(err, &me) {
		return me
	}
	return nil
}

// proxyMisconfig classifies a failure on the way through proxy p (dialing
// it, TLS with it, or the CONNECT or SOCKS5 exchange for target): the
// MisconfigError it shows, or nil when the proxy may just be down,
// restarting or slow. src, when known, is the address connections leave
// from.
func proxyMisconfig(err error, p *url.URL, target, src string) *MisconfigError {
	var pe *proxyError
	if !errors.As(err, &pe) {
		return nil
	}
	mis := func(reason, what, fix string) *MisconfigError {
		return &MisconfigError{Reason: reason, What: what, Fix: fix, Err: err, Target: target}
	}
	proxy := redact(p)
	switch pe.step {
	case stepProxyTLS:
		what := fmt.Sprintf("TLS with the proxy %s: %v", proxy, pe.err)
		var unknown x509.UnknownAuthorityError
		var hostErr x509.HostnameError
		var invalid x509.CertificateInvalidError
		var record tls.RecordHeaderError
		switch {
		case errors.As(err, &unknown):
			return mis(ReasonProxyTLS, what, "the proxy's certificate is not trusted: add the CA that issued it to egress.ca_file")
		case errors.As(err, &hostErr):
			return mis(ReasonProxyTLS, what, fmt.Sprintf("the proxy's certificate is not valid for %s: use the name it has in egress.proxy", p.Hostname()))
		case errors.As(err, &invalid):
			return mis(ReasonProxyTLS, what, "the proxy's certificate is not valid: check the clock of this host, or have the proxy's certificate renewed")
		case errors.As(err, &record):
			return mis(ReasonProxyTLS, what, "the proxy does not speak TLS: if it is a plain HTTP proxy, write http:// in egress.proxy")
		}
		return nil
	case stepSOCKS:
		msg := pe.err.Error()
		switch {
		case strings.Contains(msg, "authentication failed"):
			return mis(ReasonProxyAuth, fmt.Sprintf("SOCKS5 proxy %s refused the credentials (authentication failed)", proxy),
				"check egress.proxy credentials (the user and password)")
		case strings.Contains(msg, "no acceptable authentication methods") && pe.auth:
			return mis(ReasonProxyAuth, fmt.Sprintf("SOCKS5 proxy %s accepts neither no authentication nor a user and password", proxy),
				"check with the proxy's owners how it authenticates, and egress.proxy")
		case strings.Contains(msg, "no acceptable authentication methods"):
			return mis(ReasonProxyAuth, fmt.Sprintf("SOCKS5 proxy %s wants a user and password, and egress.proxy has none", proxy),
				"write them into egress.proxy: socks5://user:password@host:port")
		case strings.Contains(msg, "not allowed by ruleset"):
			return mis(ReasonProxyRefused, fmt.Sprintf("SOCKS5 proxy %s refused the tunnel to %s (not allowed by its rules)", proxy, target),
				fmt.Sprintf("allow %s%s in the proxy's rules", target, from(src)))
		}
		return nil
	case stepConnect:
		what := fmt.Sprintf("proxy %s refused CONNECT to %s with %v", proxy, target, pe.err)
		switch {
		case pe.status == http.StatusProxyAuthRequired && pe.auth:
			return mis(ReasonProxyAuth, what, "check egress.proxy credentials (the user and password)")
		case pe.status == http.StatusProxyAuthRequired:
			return mis(ReasonProxyAuth, what, "the proxy wants a user and password: write them into egress.proxy: http://user:password@host:port")
		case pe.status >= 400 && pe.status < 500:
			return mis(ReasonProxyRefused, what, fmt.Sprintf("allow CONNECT to %s%s in the proxy's rules", target, from(src)))
		}
	}
	return nil
}

// from is " from src", or "" when src is not known.
func from(src string) string {
	if src == "" {
		return ""
	}
	return " from " + src
}

// targetMisconfig classifies a failed TLS handshake with host (at addr,
// host:port): the MisconfigError it shows, or nil when the failure may be
// transient (a reset, a timeout).
func targetMisconfig(err error, host, addr string) *MisconfigError {
	me := tlsMisconfig(err, host, addr)
	if me != nil {
		me.Target = addr
	}
	return me
}

// tlsMisconfig is targetMisconfig without the Target.
func tlsMisconfig(err error, host, addr string) *MisconfigError {
	what := fmt.Sprintf("TLS with %s: %v", addr, err)
	var unknown x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		issuer := "an unknown issuer"
		if unknown.Cert != nil {
			issuer = fmt.Sprintf("%q", unknown.Cert.Issuer.CommonName)
		}
		return &MisconfigError{Reason: ReasonTLSUntrusted, What: what, Err: err, Fix: fmt.Sprintf(
			"the certificate of %s (issued by %s) is not trusted: a TLS-inspecting proxy or firewall re-signs it; exempt %s from TLS inspection, or add its CA to egress.ca_file",
			host, issuer, host)}
	case errors.As(err, &hostErr):
		return &MisconfigError{Reason: ReasonTLSName, What: what, Err: err, Fix: fmt.Sprintf(
			"the certificate presented is not for %s: something on the way answers in its place; let TLS to %s through untouched", host, host)}
	case errors.As(err, &invalid):
		return &MisconfigError{Reason: ReasonTLSUntrusted, What: what, Err: err, Fix: fmt.Sprintf(
			"the certificate presented for %s is not valid (%v): check the clock of this host, or what answers in its place", host, invalid)}
	case noALPNAlert(err):
		// A server that speaks none of the protocols offered (h2) may say
		// so with an alert instead of choosing none.
		me := noH2(host, addr, "")
		me.What, me.Err = fmt.Sprintf("%s does not speak HTTP/2: the server refused ALPN h2 (%v)", addr, err), err
		return me
	}
	return nil
}

// noALPNAlert reports whether err is the no_application_protocol alert
// (RFC 7301) from the server. crypto/tls does not export the type of the
// alerts it receives; their text is fixed.
func noALPNAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && strings.Contains(op.Err.Error(), "no application protocol")
}

// noH2 is the MisconfigError of a target at addr that chose proto (maybe
// "") instead of HTTP/2.
func noH2(host, addr, proto string) *MisconfigError {
	got := "no protocol"
	if proto != "" {
		got = proto
	}
	return &MisconfigError{
		Reason: ReasonNoH2,
		What:   fmt.Sprintf("%s does not speak HTTP/2: the server chose %s, not h2", addr, got),
		Fix: fmt.Sprintf("HTTP/2 is required: if %s is a reverse proxy or gateway of yours, enable HTTP/2 (ALPN h2) on it; "+
			"else let TLS to %s through untouched (no TLS inspection), or make the inspecting proxy speak h2", host, host),
		Err:    errors.New("ALPN did not select h2"),
		Target: addr,
	}
}

// hostNotAllowed is the MisconfigError of a request to host, outside the
// allowlist. It matches ErrHostNotAllowed too.
func hostNotAllowed(host string) *MisconfigError {
	return &MisconfigError{
		Reason: ReasonHostNotAllowed,
		What:   fmt.Sprintf("egress to %s refused: %v", host, ErrHostNotAllowed),
		Fix:    fmt.Sprintf("add %s to egress.allowed_hosts (or leave it empty: the default is the hosts the apps need)", host),
		Err:    ErrHostNotAllowed,
		Target: host,
	}
}

// misconfigs remembers, per host, the misconfiguration the last request to
// it met, for callers whose libraries keep only an error's text (the
// OAuth token fetch of FCM). A request to the host that fails otherwise,
// or succeeds, forgets it.
type misconfigs struct {
	n  atomic.Int32 // len(m): the requests' fast path reads only this
	mu sync.Mutex
	m  map[string]*MisconfigError
}

// note records how a request to host ended. The fast path, a success
// while nothing is remembered, is one atomic load.
func (s *misconfigs) note(host string, err error) {
	if err == nil && s.n.Load() == 0 {
		return
	}
	me := AsMisconfig(err)
	if me == nil && s.n.Load() == 0 {
		return
	}
	host = strings.ToLower(host)
	s.mu.Lock()
	defer s.mu.Unlock()
	if me != nil {
		if s.m == nil {
			s.m = map[string]*MisconfigError{}
		}
		s.m[host] = me
	} else {
		delete(s.m, host)
	}
	s.n.Store(int32(len(s.m)))
}

// get returns what the last request to host met, or nil.
func (s *misconfigs) get(host string) *MisconfigError {
	if s.n.Load() == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[host]
}

// Misconfigured returns the misconfiguration in err's chain or, when a
// library kept only err's text, the one the last request to host (the
// request URL's host[:port], as written there) met; nil when there is
// none.
func (e *Egress) Misconfigured(err error, host string) *MisconfigError {
	if me := AsMisconfig(err); me != nil {
		return me
	}
	return e.recent.get(strings.ToLower(host))
}
