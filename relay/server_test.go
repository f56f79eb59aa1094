package relay_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestIngressSpeaksHTTP11 sends what a forward proxy or a Mattermost
// server may put on the wire, byte for byte, and reads every answer.
func TestIngressSpeaksHTTP11(t *testing.T) {
	h := start(t, "{}", "limits: {max_header_bytes: 4096}")
	push := `{"platform":"apple_rn","server_id":"s","device_id":"tok","type":"message","message":"hi"}`
	post := func(extra, body string) string {
		return "POST /api/v1/send_push HTTP/1.1\r\nHost: relay\r\n" + extra + "\r\n" + body
	}
	chunked := "Transfer-Encoding: chunked\r\n"
	sized := "Content-Length: " + strconv.Itoa(len(push)) + "\r\n"
	tests := []struct {
		name    string
		send    string
		want    []int  // the status of each answer, in order
		body    string // in the last answer
		closes  bool   // the relay hangs up after its answers
		noBody  bool   // the last answer has no body
		header  string // a header of the last answer, "Name: value"
		waitFor string // write the rest of send only after this arrives
	}{
		{name: "content-length", send: post(sized, push), want: []int{200}, body: `"status":"OK"`},
		{name: "chunked, as a proxy may re-frame it", send: post(chunked, chunk(push[:10])+chunk(push[10:])+"0\r\n\r\n"),
			want: []int{200}, body: `"status":"OK"`},
		{name: "pipelined", send: post(sized, push) + post(sized, push), want: []int{200, 200}, body: `"status":"OK"`},
		{name: "expect 100-continue", send: post(sized+"Expect: 100-continue\r\n", push), want: []int{100, 200},
			body: `"status":"OK"`, waitFor: "100 Continue"},
		{name: "HTTP/1.0 is answered and closed", send: "GET /healthz HTTP/1.0\r\n\r\n", want: []int{200}, body: `"status":"OK"`, closes: true},
		{name: "HEAD on a GET route", send: "HEAD /healthz HTTP/1.1\r\nHost: relay\r\n\r\n", want: []int{200}, noBody: true},
		{name: "wrong method names the right one", send: "DELETE /api/v1/send_push HTTP/1.1\r\nHost: relay\r\n\r\n",
			want: []int{405}, body: "use POST", header: "Allow: POST"},
		{name: "chunked body over max_body_bytes", send: post(chunked, chunk(strings.Repeat("x", 70000))+"0\r\n\r\n"),
			want: []int{413}, body: "limits.max_body_bytes", closes: true},
		{name: "header over max_header_bytes", send: post("X-Big: "+strings.Repeat("x", 5000)+"\r\n"+sized, push),
			want: []int{431}, body: "limits.max_header_bytes", closes: true},
		{name: "not HTTP", send: "HELLO\r\n\r\n", want: []int{400}, body: `"status":"FAIL"`, closes: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", h.srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(conn)
			send := tt.send
			if tt.waitFor != "" {
				head, rest, _ := strings.Cut(send, "\r\n\r\n")
				io.WriteString(conn, head+"\r\n\r\n")
				line, _ := r.ReadString('\n')
				if !strings.Contains(line, tt.waitFor) {
					t.Fatalf("got %q before the body, want %q", line, tt.waitFor)
				}
				r.ReadString('\n') // the blank line after 100 Continue
				send, tt.want = rest, tt.want[1:]
			}
			io.WriteString(conn, send)
			var last *http.Response
			var body []byte
			for i, want := range tt.want {
				resp, err := http.ReadResponse(r, &http.Request{Method: strings.Fields(tt.send)[0]})
				if err != nil {
					t.Fatalf("answer %d: %v", i+1, err)
				}
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Fatalf("answer %d: HTTP %d %s, want %d", i+1, resp.StatusCode, body, want)
				}
				last = resp
			}
			if tt.noBody && len(body) > 0 {
				t.Errorf("answer has a body: %q", body)
			}
			if !tt.noBody {
				var m map[string]any
				if err := json.Unmarshal(body, &m); err != nil || !strings.Contains(string(body), tt.body) {
					t.Errorf("answer %q is not JSON holding %q", body, tt.body)
				}
				if ct := last.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
			}
			if tt.header != "" {
				name, value, _ := strings.Cut(tt.header, ": ")
				if got := last.Header.Get(name); got != value {
					t.Errorf("%s: %q, want %q", name, got, value)
				}
			}
			if tt.closes {
				// A reset is a close with some of the request still unread.
				if _, err := r.ReadByte(); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("the connection stayed open (%v)", err)
				}
			}
		})
	}
	if n := len(h.apple.Requests()); n != 5 {
		t.Errorf("%d pushes reached APNs, want 5 (one per well-formed push)", n)
	}
}

// TestOversizedRequestsGetTheirAnswer posts requests the relay answers
// without reading them whole, as Mattermost's HTTP client sends them.
func TestOversizedRequestsGetTheirAnswer(t *testing.T) {
	h := start(t, "{}")
	oversized(t, http.DefaultClient, h.url, 100)
}

// oversized posts n bodies over limits.max_body_bytes, then n requests
// with a header over limits.max_header_bytes, to the relay at base. The
// client is still writing the body when the answer comes and the relay
// hangs up: each must read its 413 or 431, never a reset connection.
func oversized(t *testing.T, c *http.Client, base string, n int) {
	t.Helper()
	body := []byte(`{"platform":"apple_rn","server_id":"s","device_id":"d","message":"` + strings.Repeat("x", 200000) + `"}`)
	for _, tc := range []struct {
		name, header string
		code         int
		says         string
	}{
		{"body over max_body_bytes", "", http.StatusRequestEntityTooLarge, "limits.max_body_bytes"},
		{"header over max_header_bytes", strings.Repeat("x", 10000), http.StatusRequestHeaderFieldsTooLarge, "limits.max_header_bytes"},
	} {
		for i := range n {
			req, err := http.NewRequest(http.MethodPost, base+"/api/v1/send_push", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "" {
				req.Header.Set("X-Big", tc.header)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s, request %d of %d: %v, want HTTP %d", tc.name, i+1, n, err, tc.code)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(string(answer), tc.says) {
				t.Fatalf("%s, request %d of %d: HTTP %d %s, want %d naming %s", tc.name, i+1, n, resp.StatusCode, answer, tc.code, tc.says)
			}
		}
	}
}

func chunk(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }
