// Package fcm is the Google provider: it posts notifications to Firebase
// Cloud Messaging (HTTP v1) with firebase.google.com/go/v4 messaging, through
// the relay's egress transport (the OAuth token fetches too), and classifies
// every outcome for the relay.
package fcm

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"

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
	client    *messaging.Client
	projectID string
	host      string // host[:port] of the FCM endpoint, for error messages
}

var _ providers.Provider = (*Provider)(nil)

// New builds the provider of one app: it validates cfg, reads and checks the
// service account, and makes the messaging client. Both the OAuth token
// fetches and the sends go through eg. It does not connect until the first
// Send. Errors name the config key at fault, relative to the app's section
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
	creds, err := google.CredentialsFromJSONWithType(tokenCtx, sa.raw, google.ServiceAccount, scope)
	if err != nil {
		return nil, fmt.Errorf("fcm.service_account_file: %w", err)
	}
	endpoint := cfg.endpoint()
	tokenURI := sa.tokenURI()
	hc := &http.Client{Transport: &transport{
		tokens: &tokenCache{src: creds.TokenSource, eg: eg, host: hostPort(tokenURI), hostname: hostOf(tokenURI)},
		base:   eg.Transport(),
	}}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: sa.ProjectID},
		option.WithHTTPClient(hc), option.WithEndpoint(endpoint+"/v1"))
	if err != nil {
		return nil, fmt.Errorf("fcm: %w", err)
	}
	client, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("fcm: %w", err)
	}
	return &Provider{client: client, projectID: sa.ProjectID, host: hostPort(endpoint)}, nil
}

// ProjectID returns the Firebase project the provider sends for, from the
// service account.
func (p *Provider) ProjectID() string { return p.projectID }

// Send posts Build(n) and classifies the outcome: Delivered on 200;
// TokenDead for UNREGISTERED and SENDER_ID_MISMATCH; Retry for UNAVAILABLE,
// INTERNAL, QUOTA_EXCEEDED (and any 429 or 5xx), timeouts, transport errors
// and token fetches that failed on the way; Failed for every other refusal
// (INVALID_ARGUMENT, THIRD_PARTY_AUTH_ERROR, a token endpoint refusing the
// service account) and for a host outside the egress allowlist. ctx carries
// the deadline; the SDK's own retries of 503 and network errors stay within
// it. The Result's error never holds the device token or notification
// content.
func (p *Provider) Send(ctx context.Context, n *wire.Notification) providers.Result {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	// The attempt's own cancel stops the SDK's retries early when retrying
	// cannot help (see attempt); ctx stays the caller's.
	sendCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	a := &attempt{cancel: cancel}
	a.deadline, _ = ctx.Deadline()
	msg := Build(n)
	if at, ok := providers.AttemptFrom(ctx); ok && !at.Expires.IsZero() {
		// FCM keeps the message for a phone that is offline no longer than it is worth.
		ttl := max(time.Until(at.Expires).Truncate(time.Second), 0)
		msg.Android.TTL = &ttl
	}
	_, err := p.client.Send(context.WithValue(sendCtx, attemptKey{}, a), msg)
	if err == nil {
		return providers.Delivery()
	}
	return p.classify(ctx, err, a, n.DeviceID)
}

// hostPort returns the host[:port] of a URL already checked.
func hostPort(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}
