package providers

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
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
