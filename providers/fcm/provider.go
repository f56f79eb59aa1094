// Package fcm is the Google provider: it posts notifications to Firebase
// Cloud Messaging (HTTP v1) through the relay's egress transport, with an
// OAuth access token of the app's service account (fetched through the
// egress transport too), and classifies every outcome for the relay. The
// message is firebase.google.com/go/v4's messaging.Message, as Build makes
// it, encoded once, straight into the request body; the request and the
// classification of Google's answer are the provider's own. Each Send is
// one attempt: retries live once, in the relay's spool.
//
// Imports: providers, providers/appconfig (its Config), providers/egress,
// providers/jsonobject and relay/wire; nothing of ingress, the policy or the
// spool.
package fcm

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/relay/wire"
)

const (
	// scope is the OAuth 2.0 scope that allows sending with FCM.
	scope = "https://www.googleapis.com/auth/firebase.messaging"
	// defaultTimeout bounds a Send whose context has no deadline of its own.
	defaultTimeout = 30 * time.Second
	// tokenFetchTimeout bounds one OAuth token fetch. Sends waiting for it
	// give up at their own deadline; the fetch itself is shared.
	tokenFetchTimeout = 20 * time.Second
)

// Provider sends notifications of one app to FCM. It is safe for concurrent
// use.
type Provider struct {
	tokens    *tokenCache
	rt        http.RoundTripper // the egress transport
	url       *url.URL          // <endpoint>/v1/projects/<project_id>/messages:send; never written after New
	projectID string
	host      string // host[:port] of the FCM endpoint, for error messages
}

var _ providers.Provider = (*Provider)(nil)

// New builds the provider of one app: it validates cfg and reads and checks
// the service account. Both the OAuth token fetches and the sends go
// through eg. It does not connect until the first Send. Errors name the
// config key at fault, relative to the app's section
// ("fcm.service_account_file: project_id is missing"), and never quote the
// key.
func New(ctx context.Context, cfg Config, eg *egress.Egress) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sa, err := loadServiceAccount(cfg.ServiceAccountFile)
	if err != nil {
		return nil, err
	}
	// The token source keeps this context for its later refreshes: it must
	// not be New's, which may end when New returns.
	tokenCtx := context.WithValue(context.Background(), oauth2.HTTPClient,
		&http.Client{Transport: eg.Transport(), Timeout: tokenFetchTimeout})
	creds, err := google.CredentialsFromJSONWithType(tokenCtx, sa.Raw, google.ServiceAccount, scope)
	if err != nil {
		return nil, fmt.Errorf("fcm.service_account_file: %w", err)
	}
	endpoint := cfg.BaseURL()
	u, err := url.Parse(endpoint + "/v1/projects/" + url.PathEscape(sa.ProjectID) + "/messages:send")
	if err != nil {
		return nil, fmt.Errorf("fcm.endpoint: %w", err)
	}
	tokenURI := sa.TokenEndpoint()
	return &Provider{
		tokens:    &tokenCache{src: creds.TokenSource, eg: eg, host: hostPort(tokenURI), hostname: hostOf(tokenURI)},
		rt:        eg.HTTP2Transport(nil),
		url:       u,
		projectID: sa.ProjectID,
		host:      u.Host,
	}, nil
}

// ProjectID returns the Firebase project the provider sends for, from the
// service account.
func (p *Provider) ProjectID() string { return p.projectID }

// Send posts Build(n), once, and classifies the outcome: Delivered on 200
// with FCM's answer; TokenDead for UNREGISTERED and SENDER_ID_MISMATCH;
// Retry, with the Retry-After asked for, for UNAVAILABLE, INTERNAL,
// QUOTA_EXCEEDED (and any 429 or 5xx), timeouts, transport errors and token
// fetches that failed on the way; Failed for every other refusal
// (INVALID_ARGUMENT, THIRD_PARTY_AUTH_ERROR, a token endpoint refusing the
// service account) and for a host outside the egress allowlist. Send makes
// at most one request and never waits to retry: that is the relay's spool's
// job. ctx carries the deadline. The Result's error never holds the device
// token or notification content.
func (p *Provider) Send(ctx context.Context, n *wire.Notification) providers.Result {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	var ttl *time.Duration
	var collapseKey string
	if at, ok := providers.AttemptFrom(ctx); ok {
		if !at.Expires.IsZero() {
			// FCM keeps the message for a phone that is offline no longer than it is worth.
			d := max(time.Until(at.Expires).Truncate(time.Second), 0)
			ttl = &d
		}
		collapseKey = redeliveryCollapseKey(at, n)
	}
	// The egress transport is done with the body when RoundTrip returns.
	body := providers.GetBuffer()
	defer providers.PutBuffer(body)
	var err error
	if *body, err = appendRequest(*body, n, ttl, collapseKey); err != nil {
		return providers.Permanent(ReasonOther, scrub(fmt.Errorf("fcm: message not sent: %w", err), n.DeviceID))
	}
	tok, err := p.tokens.get(ctx)
	if err != nil {
		return p.tokens.result(err)
	}
	resp, err := p.rt.RoundTrip(providers.NewPost(ctx, p.url, tok.header, *body))
	if err != nil {
		return p.transportResult(ctx, err, n.DeviceID)
	}
	defer resp.Body.Close()
	buf := answerBufs.Get().(*[]byte)
	defer answerBufs.Put(buf)
	answer, err := readAtMost(resp.Body, *buf)
	if err != nil && resp.StatusCode == http.StatusOK {
		// FCM took the message, most likely, but its answer did not come.
		return p.transportResult(ctx, err, n.DeviceID)
	}
	return classify(resp.StatusCode, resp.Header.Get("Retry-After"), answer, p.host, n.DeviceID)
}

// redeliveryCollapseKey is the android.collapse_key of an attempt: the ack
// id for a redelivery (an attempt that follows one which may have reached
// FCM), so that, while the phone is offline, FCM keeps one of the two
// copies, as APNs does with apns-collapse-id; "" for a first attempt, or
// without an ack id. FCM keeps at most four collapse keys per device at a
// time, so only the rare redeliveries carry one.
func redeliveryCollapseKey(at providers.Attempt, n *wire.Notification) string {
	if !at.Redelivery {
		return ""
	}
	return n.AckID
}

// hostPort returns the host[:port] of a URL already checked.
func hostPort(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}
