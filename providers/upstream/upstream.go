// Package upstream forwards notifications to another push proxy that speaks
// Mattermost's send_push API: Mattermost's hosted push service (for the App
// Store and Play Store apps, whose keys only Mattermost holds) or an inner
// proxy. What it forwards is the policy's output, like every provider.
//
// Imports: providers, providers/appconfig (its Config), providers/egress and
// relay/wire; nothing of ingress, the policy or the spool.
package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/appconfig"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// Config is one app's `upstream:` section. Its field, Validate and Hosts
// live in providers/appconfig, which relay's configuration reads without
// naming this package.
type Config = appconfig.Upstream

// Provider forwards to one push proxy. It is safe for concurrent use.
type Provider struct {
	sendURL string
	ackURL  string
	host    string
	client  *http.Client
}

// New builds a provider that posts through the egress transport.
func New(cfg Config, eg *egress.Egress) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base := strings.TrimRight(cfg.URL, "/")
	u, _ := url.Parse(base)
	return &Provider{
		sendURL: base + "/api/v1/send_push",
		ackURL:  base + "/api/v1/ack",
		host:    u.Hostname(),
		client:  &http.Client{Transport: eg.Transport()},
	}, nil
}

// Send forwards n and maps the push proxy's answer: OK is delivered, REMOVE
// a dead token, FAIL a permanent failure; 429, 5xx, timeouts and transport
// errors are worth retrying, a misconfigured egress (egress.ErrMisconfigured)
// is not.
func (p *Provider) Send(ctx context.Context, n *wire.Notification) providers.Result {
	body, err := json.Marshal(Build(n))
	if err != nil {
		return providers.Permanent("bad_payload", fmt.Errorf("upstream: encode notification: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.sendURL, bytes.NewReader(body))
	if err != nil {
		return providers.Permanent("other", fmt.Errorf("upstream: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return p.transportFailure(ctx, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return p.transportFailure(ctx, err)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return providers.Retryable("http_"+strconv.Itoa(resp.StatusCode/100)+"xx", providers.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
			fmt.Errorf("upstream %s: HTTP %d", p.host, resp.StatusCode))
	case resp.StatusCode != http.StatusOK:
		return providers.Permanent("http_4xx", fmt.Errorf("upstream %s: HTTP %d", p.host, resp.StatusCode))
	}
	var answer wire.Response
	if err := json.Unmarshal(raw, &answer); err != nil {
		return providers.Permanent("bad_answer", fmt.Errorf("upstream %s: answer is not a push response", p.host))
	}
	switch answer.Status {
	case wire.StatusOK:
		return providers.Delivery()
	case wire.StatusRemove:
		return providers.Dead("REMOVE")
	case wire.StatusFail:
		msg := strings.ReplaceAll(answer.Error, n.DeviceID, wire.TokenHash(n.DeviceID))
		return providers.Permanent("FAIL", fmt.Errorf("upstream %s: FAIL: %s", p.host, msg))
	}
	return providers.Permanent("bad_answer", fmt.Errorf("upstream %s: unknown status %q", p.host, answer.Status))
}

// AckError is why Ack failed: a providers.AckError, whose Reason is one of
// ack_timeout, ack_transport, ack_egress_denied, ack_http_4xx, ack_http_5xx
// or ack_other.
type AckError = providers.AckError

// Ack forwards a mobile app's delivery receipt to the push proxy's
// /api/v1/ack, so that its delivery accounting sees the notifications it
// delivered. Any answer but HTTP 200 is an error; the error is an *AckError.
func (p *Provider) Ack(ctx context.Context, a wire.Ack) error {
	fail := func(reason string, err error) error {
		return &AckError{Reason: reason, Err: fmt.Errorf("upstream %s: ack: %w", p.host, err)}
	}
	body, err := json.Marshal(a)
	if err != nil {
		return fail("ack_other", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.ackURL, bytes.NewReader(body))
	if err != nil {
		return fail("ack_other", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its text repeats the URL; ours names the host
		}
		switch {
		case errors.Is(err, egress.ErrHostNotAllowed):
			return fail("ack_egress_denied", err)
		case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
			return fail("ack_timeout", err)
		}
		return fail("ack_transport", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 500:
		return fail("ack_http_5xx", fmt.Errorf("HTTP %d", resp.StatusCode))
	case resp.StatusCode != http.StatusOK:
		return fail("ack_http_4xx", fmt.Errorf("HTTP %d", resp.StatusCode))
	}
	return nil
}

func (p *Provider) transportFailure(ctx context.Context, err error) providers.Result {
	if errors.Is(err, egress.ErrHostNotAllowed) {
		return providers.Permanent("egress_denied", fmt.Errorf("upstream: %w", err))
	}
	if mis := egress.AsMisconfig(err); mis != nil {
		// Waiting does not help; a change of configuration does.
		return providers.Permanent(mis.Reason, fmt.Errorf("upstream %s: %w", p.host, mis))
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // its text repeats the URL; ours names the host
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return providers.Retryable("timeout", 0, fmt.Errorf("upstream %s: no answer in time: %w", p.host, err))
	}
	return providers.Retryable("transport", 0, fmt.Errorf("upstream %s: %w", p.host, err))
}

// Build returns the notification Send posts for n: n itself, with the
// app version put back on the platform ("apple_rn-v2"), since the other
// proxy decides payload details by it, as this relay does.
func Build(n *wire.Notification) *wire.Notification {
	out := *n
	if n.AppVersion > 1 {
		out.Platform = n.Platform + "-v" + strconv.Itoa(n.AppVersion)
	}
	return &out
}
