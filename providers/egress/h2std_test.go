package egress

import (
	"context"
	"net"
	"net/http"
)

// net/http's own HTTP/2 client, kept beside h2Transport so that the fault
// tests run the same cases against both (TestH2Faults): net/http's client
// failed 4 of them and cost about twice the CPU per push on the bench rig,
// which is why the relay keeps h2Transport.

// stdHTTP2Transport returns net/http's HTTP/2 client (HTTP/2 only, the same
// PING and idle settings as HTTP2Transport) over dial, which returns a
// *tls.Conn that negotiated h2.
func stdHTTP2Transport(dial func(ctx context.Context, addr string) (net.Conn, error)) *http.Transport {
	protos := new(http.Protocols)
	protos.SetHTTP2(true)
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dial(ctx, addr)
		},
		Protocols:           protos,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     idleConnTimeout,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: pingAfter, PingTimeout: pingTimeout},
	}
}
