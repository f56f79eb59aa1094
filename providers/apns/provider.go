// Package apns is the Apple provider: it posts notifications to the Apple
// Push Notification service over HTTP/2 with github.com/sideshow/apns2,
// through the relay's egress transport, with token (.p8) or certificate
// authentication, and classifies every outcome for the relay.
package apns

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// defaultTimeout bounds a Send whose context has no deadline of its own.
const defaultTimeout = 30 * time.Second

// Provider sends notifications of one app to APNs. It holds one HTTP/2
// connection pool and is safe for concurrent use.
type Provider struct {
	client *apns2.Client
	topic  string
	host   string       // host[:port] of the gateway, for error messages
	token  *token.Token // token auth; nil with certificate auth
	expiry time.Time    // certificate NotAfter; zero with token auth
	http   *http.Client // the client inside client, for Close
}

var _ providers.Provider = (*Provider)(nil)

// New builds the provider of one app: it validates cfg, loads the signing
// key or the client certificate, and makes one HTTP/2 client on the egress
// path. It does not connect until the first Send. Errors name the config
// key at fault, relative to the app's section.
func New(cfg Config, eg *egress.Egress) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Provider{topic: cfg.Topic}
	var cert *tls.Certificate
	if cfg.AuthKeyFile != "" {
		t, err := loadToken(cfg)
		if err != nil {
			return nil, err
		}
		p.token = t
	} else {
		c, err := loadCertificate(cfg)
		if err != nil {
			return nil, err
		}
		cert = &c
		p.expiry = c.Leaf.NotAfter
	}
	host := cfg.Host()
	if u, err := url.Parse(host); err == nil {
		p.host = u.Host
	}
	// No Client.Timeout: the caller's context carries the deadline.
	p.http = &http.Client{Transport: &recorder{next: eg.HTTP2Transport(cert)}}
	p.client = &apns2.Client{Host: host, Token: p.token, HTTPClient: p.http}
	if cert != nil {
		p.client.Certificate = *cert
	}
	return p, nil
}

// CertExpiry returns when the client certificate expires; the zero time
// with token auth (.p8 keys do not expire).
func (p *Provider) CertExpiry() time.Time { return p.expiry }

// Close closes the provider's idle connections. In-flight sends finish.
func (p *Provider) Close() { p.http.CloseIdleConnections() }

// Send posts n, built by Build, and classifies the outcome: Delivered on
// 200; TokenDead for BadDeviceToken, Unregistered, MissingDeviceToken and
// DeviceTokenNotForTopic; Retry for 429, 5xx, ExpiredProviderToken,
// transport errors and timeouts; Failed for every other refusal and for a
// gateway outside the egress allowlist. ctx carries the deadline. The
// Result's error never holds the device token or notification content.
func (p *Provider) Send(ctx context.Context, n *wire.Notification) providers.Result {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	meta := new(responseMeta)
	ctx = context.WithValue(ctx, metaKey{}, meta)

	an := Build(n, p.topic)
	if a, ok := providers.AttemptFrom(ctx); ok {
		an.Expiration = a.Expires
		if a.Redelivery && n.AckID != "" && len(n.AckID) <= 64 {
			an.CollapseID = n.AckID
		}
	}
	// A token is hex in practice; anything else still reaches Apple intact
	// (and is refused there), never as a different path or query.
	an.DeviceToken = url.PathEscape(an.DeviceToken)
	res, err := p.client.PushWithContext(ctx, an)
	var r providers.Result
	switch {
	case err == nil:
		r = classify(res.StatusCode, res.Reason, meta.retryAfter, n.DeviceID)
	case meta.status != 0 && !isURLError(err):
		// An answer came, but its body was not APNs' JSON (a proxy's
		// error page, a truncated body): classify by status alone.
		r = classify(meta.status, "", meta.retryAfter, n.DeviceID)
	default:
		return p.transportResult(ctx, err, n.DeviceID, an.DeviceToken)
	}
	if r.Reason == apns2.ReasonExpiredProviderToken {
		p.renewToken()
	}
	return r
}

// renewToken makes the next request sign a fresh provider token, unless
// the current one is too young for Apple to accept a new one (Apple
// refuses renewals more often than every 20 minutes).
func (p *Provider) renewToken() {
	if p.token == nil {
		return
	}
	p.token.Lock()
	defer p.token.Unlock()
	if time.Now().Unix()-p.token.IssuedAt >= 20*60 {
		p.token.IssuedAt = 0
	}
}

// responseMeta carries what apns2 does not return from a response.
type responseMeta struct {
	status     int
	retryAfter time.Duration
}

type metaKey struct{}

// recorder is the RoundTripper under apns2: it notes Retry-After of a
// refusal into the request's responseMeta.
type recorder struct {
	next http.RoundTripper
}

func (t *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	if m, ok := r.Context().Value(metaKey{}).(*responseMeta); ok {
		m.status = resp.StatusCode
		if v := resp.Header.Get("Retry-After"); v != "" && resp.StatusCode != http.StatusOK {
			m.retryAfter = providers.ParseRetryAfter(v, time.Now())
		}
	}
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pool.
func (t *recorder) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func isURLError(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue)
}
