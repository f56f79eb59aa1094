package relay

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"
)

// Reasons a request is refused before it reaches the pipeline: the values
// of pushrelay_ingress_rejected_total's `reason` label.
const (
	rejectUnauthenticated = "unauthenticated"
	rejectNetwork         = "network"
	rejectServerID        = "server_id"
	rejectRate            = "rate_limited"
	rejectInFlight        = "in_flight"
	rejectTooLarge        = "too_large"
	rejectBadRequest      = "bad_request"
)

// authorizer decides who may use the relay: source networks (through
// trusted proxies), shared secrets, and server ids. It is immutable; a
// reload builds a new one.
type authorizer struct {
	secrets   [][sha256.Size]byte // hashed: compared in constant time, length hidden
	serverIDs map[string]bool
	networks  []netip.Prefix
	trusted   []netip.Prefix
}

func newAuthorizer(c AuthConfig) (*authorizer, error) {
	a := &authorizer{}
	if c.SecretsFile != "" {
		secrets, err := readSecrets(c.SecretsFile)
		if err != nil {
			return nil, err
		}
		for _, s := range secrets {
			a.secrets = append(a.secrets, sha256.Sum256([]byte(s)))
		}
	}
	if len(c.AllowedServerIDs) > 0 {
		a.serverIDs = map[string]bool{}
		for _, id := range c.AllowedServerIDs {
			a.serverIDs[id] = true
		}
	}
	var err error
	if a.networks, err = parsePrefixes(c.AllowedNetworks, "auth.allowed_networks"); err != nil {
		return nil, err
	}
	if a.trusted, err = parsePrefixes(c.TrustedProxies, "auth.trusted_proxies"); err != nil {
		return nil, err
	}
	return a, nil
}

// readSecrets reads one secret per line; blank lines and lines starting
// with # are skipped. Errors never quote the file's content.
func readSecrets(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth.secrets_file: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if len(s) < 16 {
			return nil, fmt.Errorf("auth.secrets_file: line %d: a secret must be at least 16 characters", line)
		}
		if strings.ContainsAny(s, "/:@?#% ") {
			return nil, fmt.Errorf("auth.secrets_file: line %d: a secret must not contain / : @ ? # %% or spaces (it travels in a URL)", line)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth.secrets_file: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("auth.secrets_file: %s holds no secret", path)
	}
	return out, nil
}

func parsePrefixes(cidrs []string, key string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for i, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			addr, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return nil, fmt.Errorf("%s[%d]: %q is not a CIDR (e.g. 10.1.0.0/16) or an IP address", key, i, c)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the address the request comes from: the peer, or, when the
// peer is a trusted proxy, the nearest X-Forwarded-For hop that is not.
func (a *authorizer) clientAddr(peer netip.Addr, h *fasthttp.RequestHeader) netip.Addr {
	addr := peer.Unmap()
	if !addr.IsValid() || !contains(a.trusted, addr) {
		return addr
	}
	var hops []string
	for _, v := range h.PeekAll("X-Forwarded-For") {
		hops = append(hops, strings.Split(string(v), ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr // a garbled hop: believe only the peer
		}
		addr = hop.Unmap()
		if !contains(a.trusted, addr) {
			return addr
		}
	}
	return addr
}

// allowNetwork reports whether the request's client address may use the relay.
func (a *authorizer) allowNetwork(client netip.Addr) bool {
	return len(a.networks) == 0 || contains(a.networks, client)
}

// secretFrom returns the secret a request carries in its Authorization
// header: the password of HTTP Basic auth (what Go's client makes of
// userinfo in the push URL) or a Bearer token (gateways).
func secretFrom(h *fasthttp.RequestHeader) string {
	auth := string(h.Peek(fasthttp.HeaderAuthorization))
	scheme, cred, _ := strings.Cut(auth, " ")
	switch {
	case strings.EqualFold(scheme, "basic"):
		// As net/http's Request.BasicAuth reads it.
		userPass, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return ""
		}
		_, pw, ok := strings.Cut(string(userPass), ":")
		if !ok {
			return ""
		}
		return pw
	case strings.EqualFold(scheme, "bearer"):
		return strings.TrimSpace(cred)
	}
	return ""
}

// knows compares s with every secret in constant time.
func (a *authorizer) knows(s string) bool {
	if s == "" {
		return false
	}
	sum := sha256.Sum256([]byte(s))
	found := 0
	for i := range a.secrets {
		found |= subtle.ConstantTimeCompare(sum[:], a.secrets[i][:])
	}
	return found == 1
}

// splitSecretPath recognizes /SECRET/api/...: carried says the path has
// that shape (and secrets are configured), stripped is the path without its
// first segment, known whether that segment is one of the secrets. Other
// paths come back unchanged.
func (a *authorizer) splitSecretPath(path string) (stripped string, carried, known bool) {
	if len(a.secrets) == 0 || len(path) < 2 {
		return path, false, false
	}
	first, rest, ok := strings.Cut(path[1:], "/")
	if !ok || first == "api" || !strings.HasPrefix(rest, "api/") {
		return path, false, false
	}
	return "/" + rest, true, a.knows(first)
}

func (a *authorizer) allowServerID(id string) bool {
	return a.serverIDs == nil || a.serverIDs[id]
}

// limiter is a token bucket per client address, bounded: buckets idle for
// longer than idleAfter are forgotten.
type limiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

const idleAfter = 10 * time.Minute

func newLimiter(perSecond float64, burst int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = max(1, int(perSecond))
	}
	return &limiter{rate: rate.Limit(perSecond), burst: burst, buckets: map[netip.Addr]*bucket{}, swept: time.Now()}
}

// allow takes one token from client's bucket; when there is none it returns
// how long until there will be.
func (l *limiter) allow(client netip.Addr, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > idleAfter {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > idleAfter {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[client]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[client] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// errNoSecret is what a request without a valid secret is told.
var errNoSecret = errors.New("authentication required: put the shared secret in the push URL (https://mattermost:SECRET@relay:8066) or send it as a Bearer token")

// peerAddr is the address of the connection's other end.
func peerAddr(c *fasthttp.RequestCtx) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
