package loadgen

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// requestTimeout bounds one request, from its write to its answer.
const requestTimeout = 30 * time.Second

// client posts send_push requests over HTTP/1.1 keep-alive connections, as
// Mattermost's server does, one connection per sender. It is fasthttp's
// client: the load generator shares the machine with the relay it
// measures, and net/http's client took 41 µs of CPU per request there
// against fasthttp's 15 µs (profiles of one bench run each), CPU the relay
// and the look-alikes then did not get.
type client struct {
	hc    *fasthttp.HostClient
	uri   string // the URL without its user information
	authz string // "Basic ..." from the URL's user information, or ""

	mu     sync.Mutex
	open   map[net.Conn]struct{}
	closed bool
}

// newClient returns a client for the send_push URL rawURL with room for
// conns connections.
func newClient(rawURL string, conns int) (*client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the URL, which may hold a secret: keep its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("loadgen: the send_push URL does not parse: %w", err)
	}
	port := u.Port()
	switch {
	case u.Scheme == "http" && port == "":
		port = "80"
	case u.Scheme == "https" && port == "":
		port = "443"
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("loadgen: the send_push URL must be http or https, got scheme %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("loadgen: the send_push URL has no host")
	}
	c := &client{open: make(map[net.Conn]struct{})}
	if u.User != nil {
		pass, _ := u.User.Password()
		c.authz = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass))
		u.User = nil
	}
	c.uri = u.String()
	c.hc = &fasthttp.HostClient{
		Addr:                     net.JoinHostPort(u.Hostname(), port),
		IsTLS:                    u.Scheme == "https",
		Dial:                     c.dial,
		MaxConns:                 conns,
		ReadTimeout:              requestTimeout,
		WriteTimeout:             requestTimeout,
		NoDefaultUserAgentHeader: true,
		// A push is not idempotent: a failed request is counted, never
		// sent again behind the report's back.
		RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
	}
	return c, nil
}

// dial opens a connection the client tracks, so that close cuts it.
func (c *client) dial(addr string) (net.Conn, error) {
	conn, err := fasthttp.DialTimeout(addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		conn.Close()
		return nil, net.ErrClosed
	}
	t := &trackedConn{Conn: conn, c: c}
	c.open[t] = struct{}{}
	return t, nil
}

// close closes every connection, cutting off the requests in flight, and
// refuses new ones.
func (c *client) close() {
	c.mu.Lock()
	c.closed = true
	open := c.open
	c.open = map[net.Conn]struct{}{}
	c.mu.Unlock()
	for conn := range open {
		conn.(*trackedConn).Conn.Close()
	}
}

// trackedConn forgets itself when closed.
type trackedConn struct {
	net.Conn
	c *client
}

func (t *trackedConn) Close() error {
	t.c.mu.Lock()
	delete(t.c.open, t)
	t.c.mu.Unlock()
	return t.Conn.Close()
}

// post sends one notification, as Mattermost's server does (no
// Content-Type, its User-Agent, the URL's user information as Basic
// authorization), and returns the status of the relay's answer
// ("" when its body is not the send_push answer) and its HTTP status code.
func (c *client) post(body []byte) (status string, code int, err error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.uri)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetNoDefaultContentType(true)
	req.Header.SetUserAgent("Mattermost-Bot/1.1")
	if c.authz != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, c.authz)
	}
	req.SetBodyRaw(body)
	if err := c.hc.DoTimeout(req, resp, requestTimeout); err != nil {
		return "", 0, err
	}
	var r wire.Response
	if json.Unmarshal(resp.Body(), &r) != nil {
		return "", resp.StatusCode(), nil
	}
	return r.Status, resp.StatusCode(), nil
}
