package fcm

import (
	"context"
	"net/http"
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

// accessToken is a token and the header of the sends that use it, made
// once.
type accessToken struct {
	tok    *oauth2.Token
	header http.Header // shared by those sends, never written
}

// newAccessToken makes the header of the sends that use tok: its
// Authorization, the JSON content type, and the API format version that
// asks for FCM's detailed error answers (the FcmError details), as the
// firebase SDK does.
func newAccessToken(tok *oauth2.Token) *accessToken {
	return &accessToken{tok: tok, header: http.Header{
		"Authorization":             {tok.Type() + " " + tok.AccessToken},
		"Content-Type":              {"application/json"},
		"X-Goog-Api-Format-Version": {"2"},
	}}
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
		t = newAccessToken(tok)
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
