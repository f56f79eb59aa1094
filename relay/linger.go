package relay

import (
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	// lingerTimeout bounds how long a lingering close waits for the client
	// to finish sending and hang up (net/http's server waits as long).
	lingerTimeout = 500 * time.Millisecond
	// lingerMax bounds what a lingering close reads and drops.
	lingerMax = 256 << 10
)

// lingerListener hands out ingress connections that can close gently (see
// lingerConn).
type lingerListener struct{ net.Listener }

// Accept returns the next connection, able to linger.
func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lingerConn{Conn: c}, nil
}

// lingerConn is an ingress connection that, once the relay answered a
// request it did not read in full (a body over limits.max_body_bytes, a
// header over limits.max_header_bytes), closes gently.
//
// A socket closed with received bytes still unread sends a reset, and a
// client still writing its request (as Mattermost's does, a large body)
// then fails on the write and may never read the answer that was already
// on its way: a 413 would arrive as a broken connection. So Close sends
// what is written and shuts the sending side first, then reads and drops
// what the client still sends, until it hangs up, lingerTimeout passes or
// lingerMax bytes came, and only then closes.
type lingerConn struct {
	net.Conn
	linger atomic.Bool
}

// Close closes the connection, gently when asked to linger.
func (c *lingerConn) Close() error {
	if c.linger.Load() {
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.CopyN(io.Discard, c.Conn, lingerMax)
		}
	}
	return c.Conn.Close()
}

// lingerOnClose makes the connection of a request the relay answers
// without having read it in full close gently, once fasthttp closes it.
func lingerOnClose(c *fasthttp.RequestCtx) {
	conn := c.Conn()
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	if lc, ok := conn.(*lingerConn); ok {
		lc.linger.Store(true)
	}
}
