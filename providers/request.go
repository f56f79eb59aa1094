package providers

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"sync"
)

// NewPost returns the POST of body to u with header h, under ctx, for a
// transport's RoundTrip: built without http.NewRequest's URL parsing, and
// with GetBody, so that a transport may send it again on a new connection
// when the first one closed before the request was processed (HTTP/2
// GOAWAY, a dead idle connection), never as a second delivery. u and h are
// the caller's and must not change while the request is in flight.
func NewPost(ctx context.Context, u *url.URL, h http.Header, body []byte) *http.Request {
	req := &http.Request{
		Method:        http.MethodPost,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          newRequestBody(body),
		GetBody:       func() (io.ReadCloser, error) { return newRequestBody(body), nil },
		ContentLength: int64(len(body)),
		Host:          u.Host,
	}
	return req.WithContext(ctx)
}

// requestBody is a request's body: a bytes.Reader that closes, in one
// allocation.
type requestBody struct{ bytes.Reader }

func newRequestBody(b []byte) *requestBody {
	r := new(requestBody)
	r.Reset(b)
	return r
}

// Close does nothing: the bytes stay the caller's.
func (*requestBody) Close() error { return nil }

// maxPooledBody is the largest body buffer PutBuffer keeps: a push body is
// a few hundred bytes, and a rare large one should not stay in the pool.
const maxPooledBody = 64 << 10

var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

// GetBuffer returns an empty buffer for a request body, from a pool. Give it
// back with PutBuffer once the transport is done with the body: the egress
// HTTP/2 transport is once its RoundTrip has returned.
func GetBuffer() *[]byte {
	b := bodyPool.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// PutBuffer gives b back to the pool; b must not be used after.
func PutBuffer(b *[]byte) {
	if cap(*b) <= maxPooledBody {
		bodyPool.Put(b)
	}
}
