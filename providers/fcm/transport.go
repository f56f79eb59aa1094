package fcm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
)

// transport is the RoundTripper under the firebase SDK. It does what
// oauth2.Transport does (a bearer token on every request), except that
// waiting for the token is bounded by the request's context and token
// fetches are shared; and it notes each round trip's outcome in the
// request's attempt, which the SDK's errors do not carry (it turns every
// transport error into text).
type transport struct {
	tokens *tokenCache
	base   http.RoundTripper // the egress transport
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	a, _ := r.Context().Value(attemptKey{}).(*attempt)
	tok, err := t.tokens.get(r.Context())
	if err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		if a != nil {
			a.noToken(t.tokens.result(err))
		}
		return nil, err
	}
	if d, ok := r.Context().Deadline(); ok && time.Until(d) < minRequestTime {
		// Too late to get an answer: a request sent now could be delivered
		// and still count as a timeout, which makes the retry a duplicate.
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, context.DeadlineExceeded
	}
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", tok.Type()+" "+tok.AccessToken)
	resp, err := t.base.RoundTrip(r2)
	if a != nil {
		a.answered(resp, err)
	}
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pool.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// minRequestTime is the least time left before the deadline for which a
// request (one of the SDK's own retries, typically) is still sent.
const minRequestTime = 100 * time.Millisecond

// attemptKey is the context key of a Send's *attempt.
type attemptKey struct{}

// attempt records what happened to one Send's round trips (the SDK may make
// several). Only the Send's goroutine touches it: the SDK calls the
// transport synchronously.
type attempt struct {
	// cancel ends the send early: a refusal by the egress allowlist or the
	// token endpoint cannot get better within the deadline, and a
	// Retry-After beyond the deadline would only be waited out.
	cancel   context.CancelFunc
	deadline time.Time // zero when none

	trips int // round trips tried, token failures included
	// The last round trip's outcome: an answer (status), a transport
	// error, or a failed token fetch.
	status     int
	retryAfter time.Duration
	err        error
	token      *providers.Result
	// permanent, once set, is the Send's result whatever came after.
	permanent *providers.Result
}

// noToken records a round trip that got no OAuth token.
func (a *attempt) noToken(res providers.Result) {
	a.trips++
	a.status, a.retryAfter, a.err, a.token = 0, 0, nil, &res
	if res.Outcome == providers.Failed {
		a.fail(res)
	}
}

// answered records a round trip's answer or error. When the answer will be
// retried after a Retry-After beyond the deadline, the body is wrapped to
// end the send once the SDK has read it.
func (a *attempt) answered(resp *http.Response, err error) {
	a.trips++
	a.token = nil
	if err != nil {
		a.status, a.retryAfter, a.err = 0, 0, err
		if errors.Is(err, egress.ErrHostNotAllowed) {
			a.fail(providers.Permanent(ReasonEgressDenied, fmt.Errorf("fcm: %w", err)))
		}
		return
	}
	a.err = nil
	a.status, a.retryAfter = resp.StatusCode, 0
	if resp.StatusCode == http.StatusOK {
		return
	}
	a.retryAfter = providers.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	if resp.StatusCode == http.StatusServiceUnavailable && a.retryAfter > 0 && // the SDK retries 503 only
		!a.deadline.IsZero() && time.Now().Add(a.retryAfter).After(a.deadline) {
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: a.cancel}
	}
}

// fail settles the Send on res and stops the SDK's retries.
func (a *attempt) fail(res providers.Result) {
	if a.permanent == nil {
		a.permanent = &res
	}
	a.cancel()
}

// cancelOnClose cancels a context when the body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// tokenCache hands out the OAuth access token. While it is valid, get
// returns it at once; otherwise one fetch runs (through the egress
// transport, bounded by tokenFetchTimeout) and every request waits for it
// until its own context ends.
type tokenCache struct {
	src      oauth2.TokenSource
	eg       *egress.Egress
	host     string // host[:port] of the token endpoint, for error messages
	hostname string // its host name, as the egress allowlist sees it

	mu       sync.Mutex
	tok      *oauth2.Token
	inflight *tokenFetch
}

// tokenFetch is one fetch in progress; tok and err are set before done is
// closed.
type tokenFetch struct {
	done chan struct{}
	tok  *oauth2.Token
	err  error
}

// get returns a valid access token, or why there is none.
func (c *tokenCache) get(ctx context.Context) (*oauth2.Token, error) {
	c.mu.Lock()
	if c.tok.Valid() {
		t := c.tok
		c.mu.Unlock()
		return t, nil
	}
	f := c.inflight
	if f == nil {
		f = &tokenFetch{done: make(chan struct{})}
		c.inflight = f
		go c.fetch(f)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *tokenCache) fetch(f *tokenFetch) {
	tok, err := c.src.Token()
	c.mu.Lock()
	if err == nil {
		c.tok = tok
	}
	c.inflight = nil
	c.mu.Unlock()
	f.tok, f.err = tok, err
	close(f.done)
}
