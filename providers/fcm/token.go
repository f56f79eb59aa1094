package fcm

import (
	"context"
	"sync"

	"golang.org/x/oauth2"

	"github.com/pushrelay/pushrelay/providers/egress"
)

// tokenCache hands out the OAuth access token Send puts on its request. It
// does what oauth2.ReuseTokenSource does, except that waiting for a token is
// bounded by the send's context and fetches are shared: while the token is
// valid, get returns it at once; otherwise one fetch runs (through the
// egress transport, bounded by tokenFetchTimeout) and every send waits for
// it until its own context ends.
type tokenCache struct {
	src      oauth2.TokenSource
	eg       *egress.Egress
	host     string // host[:port] of the token endpoint, for error messages
	hostname string // its host name, as the egress allowlist sees it

	mu       sync.Mutex
	tok      *accessToken
	inflight *tokenFetch
}

// accessToken is a token and its Authorization header value, made once.
type accessToken struct {
	tok   *oauth2.Token
	authz []string // {"Bearer " + access token}; shared, never written
}

// tokenFetch is one fetch in progress; tok and err are set before done is
// closed.
type tokenFetch struct {
	done chan struct{}
	tok  *accessToken
	err  error
}

// get returns a valid access token, or why there is none (classified by
// result).
func (c *tokenCache) get(ctx context.Context) (*accessToken, error) {
	c.mu.Lock()
	if t := c.tok; t != nil && t.tok.Valid() {
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
	var t *accessToken
	if err == nil {
		t = &accessToken{tok: tok, authz: []string{tok.Type() + " " + tok.AccessToken}}
	}
	c.mu.Lock()
	if err == nil {
		c.tok = t
	}
	c.inflight = nil
	c.mu.Unlock()
	f.tok, f.err = t, err
	close(f.done)
}
