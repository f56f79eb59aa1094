package sandbox

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The handlers alone, without HTTP/2, TLS and a client: what a request
// costs the look-alike itself.

func BenchmarkAPNsHandler(b *testing.B) {
	s := &APNs{dead: map[string]deadToken{}, keys: map[string]apnsKey{}, srv: &server{done: make(chan struct{})}}
	s.SetRecording(false)
	body := `{"aps":{"alert":{"body":"You've received a new message."},"badge":3,"sound":"default",` +
		`"mutable-content":1,"category":"CAN_REPLY"},"ack_id":"5f2c8e1a9b7d4c3e8f6a0b1c2d3e4f5a",` +
		`"server_id":"k3j8d9s7f6g5h4j3k2l1m0n9b8","type":"message","version":"v2",` +
		`"post_id":"p9o8i7u6y5t4r3e2w1q0a9s8d7","channel_id":"c1v2b3n4m5l6k7j8h9g0f1d2s3",` +
		`"team_id":"t5r4e3w2q1a0s9d8f7g6h5j4k3","is_id_loaded":true}`
	r := httptest.NewRequest(http.MethodPost, "https://127.0.0.1/3/device/0123456789abcdef", nil)
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.Header = http.Header{
		"Apns-Topic":      {"com.mattermost.rn"},
		"Apns-Push-Type":  {"alert"},
		"Apns-Priority":   {"10"},
		"Apns-Expiration": {"1900000000"},
		"Authorization":   {"bearer eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJUIn0.c2ln"},
	}
	benchHandler(b, s.serve, r, body, http.StatusOK)
}

func BenchmarkFCMHandler(b *testing.B) {
	s := &FCM{tokens: map[string]accessToken{}, dead: map[string]string{}, keys: nil, srv: &server{done: make(chan struct{})}}
	s.SetRecording(false)
	s.tokens["ya29.bench"] = accessToken{expiry: time.Now().Add(time.Hour)}
	body := `{"message":{"token":"` + strings.Repeat("fGx7Qm3kT0aP2vL9wX", 9) + `","data":{` +
		`"ack_id":"5f2c8e1a9b7d4c3e8f6a0b1c2d3e4f5a","type":"message","version":"v2",` +
		`"post_id":"p9o8i7u6y5t4r3e2w1q0a9s8d7","channel_id":"c1v2b3n4m5l6k7j8h9g0f1d2s3",` +
		`"team_id":"t5r4e3w2q1a0s9d8f7g6h5j4k3","badge":"3","is_id_loaded":"true",` +
		`"server_id":"k3j8d9s7f6g5h4j3k2l1m0n9b8","sender_id":"u1i2o3p4a5s6d7f8g9h0j1k2l3"},` +
		`"android":{"priority":"high","ttl":"3600s"}}}`
	r := httptest.NewRequest(http.MethodPost, "https://127.0.0.1/v1/projects/pushrelay-sandbox/messages:send", nil)
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.Header = http.Header{"Authorization": {"Bearer ya29.bench"}, "Content-Type": {"application/json"}}
	benchHandler(b, s.route(s.newMux()), r, body, http.StatusOK)
}

// benchHandler serves r with body to h b.N times, failing unless h answers
// want.
func benchHandler(b *testing.B, h http.HandlerFunc, r *http.Request, body string, want int) {
	var rd strings.Reader
	r.Body = io.NopCloser(&rd)
	r.ContentLength = int64(len(body)) // as HTTP/2 clients announce it
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		clear(w.h)
		w.status = 0
		h(w, r)
		if w.status != want {
			b.Fatalf("answered %d, want %d: %s", w.status, want, w.body.Bytes())
		}
		w.body.Reset()
	}
}

// discardWriter is a ResponseWriter that keeps the status and the last
// body.
type discardWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}
