package egress

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"

	"golang.org/x/net/http2"
)

// net/http's own HTTP/2 client, kept beside h2Transport so that the fault
// tests run the same cases against both (TestH2Faults) and so that the two
// can be measured on the same rig: they decide whether h2Transport still
// earns its keep. Not used by the relay.

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

// stdHTTP2 is HTTP2Transport's dial path (egress.proxy, source address,
// roots) under net/http's HTTP/2 client instead of h2Transport, without
// the host allowlist: for measuring only.
func (e *Egress) stdHTTP2(tc *tls.Config) http.RoundTripper {
	return stdHTTP2Transport(func(ctx context.Context, addr string) (net.Conn, error) {
		cfg := tc
		if host, _, err := net.SplitHostPort(addr); err == nil && cfg.ServerName == "" {
			cfg = tc.Clone()
			cfg.ServerName = host
		}
		ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		defer cancel()
		raw, err := e.dial.dialRaw(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		conn := tls.Client(raw, cfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		if p := conn.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
			conn.Close()
			return nil, fmt.Errorf("%s does not speak HTTP/2 (ALPN %q)", addr, p)
		}
		return conn, nil
	})
}
