// Package apns is the Apple provider: it posts notifications to the Apple
// Push Notification service over HTTP/2, through the relay's egress
// transport, with token (.p8) or certificate authentication, and classifies
// every outcome for the relay. Provider tokens, types and reason codes are
// github.com/sideshow/apns2's; the payload is encoded straight from the
// notification, once, instead of through apns2's map and json.Marshal.
//
// Imports: providers, providers/appconfig (its Config), providers/egress,
// providers/jsonobject and relay/wire; nothing of ingress, the policy or the
// spool.
package apns

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// defaultTimeout bounds a Send whose context has no deadline of its own.
const defaultTimeout = 30 * time.Second

// Provider sends notifications of one app to APNs. It holds its own HTTP/2
// connections (more than one when one is saturated, see egress) and is safe
// for concurrent use.
type Provider struct {
	rt    http.RoundTripper // the egress path's HTTP/2 transport
	url   url.URL           // the gateway's: its scheme, and its host[:port] (also for error messages)
	path  string            // escaped path prefix of a push: [base path]/3/device/
	alert http.Header       // the headers every request of this app carries
	voip  http.Header       // the same for VoIP pushes
	token *token.Token      // token auth; nil with certificate auth
	cert  *tls.Certificate  // certificate auth; nil with token auth

	authz atomic.Pointer[authorization] // the last provider token, as a header
	// The last header made for an alert push ([0]) and a VoIP one ([1]):
	// pushes accepted in the same second share it.
	headers [2]atomic.Pointer[sharedHeader]
}

// sharedHeader is a request header that the requests of one second share:
// the app's headers, the provider token and the expiration. Never written
// once made.
type sharedHeader struct {
	authz   *authorization // nil with certificate auth
	expires int64          // apns-expiration, in Unix seconds; 0 for none
	h       http.Header
}

// authorization is a signed provider token and its header value.
type authorization struct {
	bearer string
	header []string // {"bearer " + bearer}
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
	p := &Provider{}
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
		p.cert = &c
	}
	u, err := url.Parse(strings.TrimRight(cfg.Host(), "/"))
	if err != nil {
		return nil, fmt.Errorf("apns.endpoint: %w", err)
	}
	p.url = *u
	p.path = strings.TrimRight(u.EscapedPath(), "/") + "/3/device/"
	// The caller's context carries the deadline.
	p.rt = eg.HTTP2Transport(p.cert)
	// Lower-case names: HTTP/2 sends them so, without converting each time.
	// These maps are shared by every request and never written after New.
	priority := []string{strconv.Itoa(apns2.PriorityHigh)}
	contentType := []string{"application/json; charset=utf-8"}
	p.alert = http.Header{"apns-topic": {cfg.Topic}, "apns-push-type": {string(apns2.PushTypeAlert)},
		"apns-priority": priority, "content-type": contentType}
	p.voip = http.Header{"apns-topic": {cfg.Topic + ".voip"}, "apns-push-type": {string(apns2.PushTypeVOIP)},
		"apns-priority": priority, "content-type": contentType}
	return p, nil
}

// CertExpiry returns when the client certificate expires; the zero time
// with token auth (.p8 keys do not expire).
func (p *Provider) CertExpiry() time.Time {
	if p.cert == nil {
		return time.Time{}
	}
	return p.cert.Leaf.NotAfter
}

// Close closes the provider's idle connections. In-flight sends finish.
func (p *Provider) Close() {
	if c, ok := p.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

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
	// A token is hex in practice; anything else still reaches Apple intact
	// (and is refused there), never as a different path or query.
	sentToken := url.PathEscape(n.DeviceID)
	// The egress transport is done with the body when RoundTrip returns.
	payload := providers.GetBuffer()
	defer providers.PutBuffer(payload)
	*payload = appendPayloadOf(*payload, n)
	resp, err := p.rt.RoundTrip(p.request(ctx, n, sentToken, *payload))
	if err != nil {
		return p.transportResult(ctx, err, n.DeviceID, sentToken)
	}
	defer resp.Body.Close()
	if resp.StatusCode == apns2.StatusSent {
		io.Copy(io.Discard, resp.Body) // lets the stream end cleanly
		return providers.Delivery()
	}
	var retryAfter time.Duration
	if v := resp.Header.Get("Retry-After"); v != "" {
		retryAfter = providers.ParseRetryAfter(v, time.Now())
	}
	// APNs' JSON reason; a body that is not (a proxy's error page, a
	// truncated body) leaves the status alone to classify.
	var body apns2.Response
	if b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody)); err == nil {
		json.Unmarshal(b, &body)
	}
	r := classify(resp.StatusCode, body.Reason, retryAfter, p.url.Host, n.DeviceID)
	if r.Reason == apns2.ReasonExpiredProviderToken {
		p.renewToken()
	}
	return r
}

// maxErrorBody bounds how much of a refusal's body is read.
const maxErrorBody = 4 << 10

// request makes the POST of body, n's payload: the app's headers, the
// provider token, from the attempt an expiration, and the collapse id
// ack_id, so that a phone shows a notification delivered twice once. Every
// attempt carries it, the first too: a first attempt whose answer was lost
// (a timeout, a connection lost after the request left) may have reached
// the phone, and only a copy with the same collapse id replaces it.
func (p *Provider) request(ctx context.Context, n *wire.Notification, sentToken string, body []byte) *http.Request {
	// Opaque is the path as sent: sentToken is escaped already.
	u := &url.URL{Scheme: p.url.Scheme, Host: p.url.Host, Opaque: p.path + sentToken}
	a, _ := providers.AttemptFrom(ctx)
	h := p.header(n.Transport == wire.TransportVoIP, a.Expires)
	if n.AckID != "" && len(n.AckID) <= 64 { // Apple's limit: 64 bytes
		h = maps.Clone(h)
		h["apns-collapse-id"] = []string{n.AckID}
	}
	return providers.NewPost(ctx, u, h, body)
}

// header returns the header of a push that expires then (never, if zero):
// the one made last when it is still right, else a new one, kept for the
// pushes that follow.
func (p *Provider) header(voip bool, expires time.Time) http.Header {
	var authz *authorization
	if p.token != nil {
		authz = p.authorization()
	}
	var exp int64
	if !expires.IsZero() {
		exp = expires.Unix()
	}
	last, app := &p.headers[0], p.alert
	if voip {
		last, app = &p.headers[1], p.voip
	}
	if s := last.Load(); s != nil && s.authz == authz && s.expires == exp {
		return s.h
	}
	h := make(http.Header, len(app)+2)
	maps.Copy(h, app)
	if authz != nil {
		h["authorization"] = authz.header
	}
	if exp != 0 {
		h["apns-expiration"] = []string{strconv.FormatInt(exp, 10)}
	}
	last.Store(&sharedHeader{authz: authz, expires: exp, h: h})
	return h
}

// authorization returns a provider token signed within the hour, signing
// a new one when it is due.
func (p *Provider) authorization() *authorization {
	bearer := p.token.GenerateIfExpired()
	if a := p.authz.Load(); a != nil && a.bearer == bearer {
		return a
	}
	a := &authorization{bearer: bearer, header: []string{"bearer " + bearer}}
	p.authz.Store(a)
	return a
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
