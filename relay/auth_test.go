package relay_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay"
)

const secret = "s3cr3t-0123456789abcdef"

func writeSecrets(t *testing.T, secrets ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(path, []byte("# relay secrets\n"+strings.Join(secrets, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// forwardProxy is a corporate forward proxy: absolute-form HTTP/1.1
// requests are forwarded, CONNECT is tunnelled. It counts both.
type forwardProxy struct {
	mu       sync.Mutex
	forwards int
	connects int
}

func (p *forwardProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.mu.Lock()
		p.connects++
		p.mu.Unlock()
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		conn, buf, _ := w.(http.Hijacker).Hijack()
		go func() { io.Copy(up, buf); up.Close() }()
		io.Copy(conn, up)
		conn.Close()
		return
	}
	p.mu.Lock()
	p.forwards++
	p.mu.Unlock()
	r.RequestURI = ""
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func startProxy(t *testing.T) (*forwardProxy, *url.URL) {
	t.Helper()
	p := &forwardProxy{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	u, _ := url.Parse("http://" + ln.Addr().String())
	return p, u
}

// mattermostPush sends msg the way the Mattermost server does: its
// PushNotificationServer URL + "/api/v1/send_push", Go's http.Client (which
// turns URL userinfo into Basic auth), its proxy settings, no Content-Type.
func mattermostPush(t *testing.T, pushServer string, proxy *url.URL, header http.Header, msg *model.PushNotification) (int, map[string]string) {
	t.Helper()
	body, _ := json.Marshal(msg)
	tr := &http.Transport{}
	if proxy != nil {
		tr.Proxy = http.ProxyURL(proxy)
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	req, err := http.NewRequest(http.MethodPost, pushServer+"/api/v1/send_push", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "Mattermost-Bot/1.1")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer map[string]string
	json.NewDecoder(resp.Body).Decode(&answer)
	return resp.StatusCode, answer
}

func TestSecretsEachWayMattermostCanCarryThem(t *testing.T) {
	h := start(t, "{}", fmt.Sprintf("auth: {secrets_file: %q, allowed_server_ids: [srv-1]}", writeSecrets(t, "another-secret-0000000", secret)))
	addr := h.srv.Addr()
	proxy, proxyURL := startProxy(t)
	tests := []struct {
		name   string
		url    string
		proxy  *url.URL
		header http.Header
		code   int
		status string
	}{
		{"basic auth from URL userinfo", "http://mattermost:" + secret + "@" + addr, nil, nil, 200, "OK"},
		{"basic auth through the corporate proxy", "http://mattermost:" + secret + "@" + addr, proxyURL, nil, 200, "OK"},
		{"secret path prefix", "http://" + addr + "/" + secret, nil, nil, 200, "OK"},
		{"secret path prefix through the corporate proxy", "http://" + addr + "/" + secret, proxyURL, nil, 200, "OK"},
		{"bearer from a gateway", "http://" + addr, nil, http.Header{"Authorization": {"Bearer " + secret}}, 200, "OK"},
		{"no secret", "http://" + addr, nil, nil, 401, "FAIL"},
		{"wrong basic secret", "http://mattermost:wrong-secret-000000000@" + addr, nil, nil, 401, "FAIL"},
		{"wrong path secret", "http://" + addr + "/wrong-secret-000000000", nil, nil, 401, "FAIL"},
		{"wrong bearer", "http://" + addr, nil, http.Header{"Authorization": {"Bearer nope"}}, 401, "FAIL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.apple.Delivered()
			code, answer := mattermostPush(t, tt.url, tt.proxy, tt.header, mmMessage("apple_rn", "tok"))
			if code != tt.code || answer["status"] != tt.status {
				t.Errorf("got HTTP %d %v, want %d %s", code, answer, tt.code, tt.status)
			}
			if delivered := h.apple.Delivered() - before; (tt.code == 200) != (delivered == 1) {
				t.Errorf("%d pushes reached APNs", delivered)
			}
		})
	}
	if proxy.forwards != 2 {
		t.Errorf("the corporate proxy forwarded %d requests, want 2", proxy.forwards)
	}

	other := mmMessage("apple_rn", "tok")
	other.ServerId = "srv-unknown"
	if code, answer := mattermostPush(t, "http://mattermost:"+secret+"@"+addr, nil, nil, other); code != 403 || !strings.Contains(answer["error"], "allowed_server_ids") {
		t.Errorf("unknown server id: HTTP %d %v", code, answer)
	}
	if logs := h.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, "wrong-secret") {
		t.Errorf("a secret reached the log:\n%s", logs)
	}
	for _, path := range []string{"/healthz", "/readyz", "/version", "/"} {
		if resp, err := http.Get("http://" + addr + path); err != nil || resp.StatusCode != 200 {
			t.Errorf("%s needs no secret: %v %v", path, resp, err)
		}
	}
}

func TestTLSRelayThroughTheCorporateProxy(t *testing.T) {
	p := newPKI(t)
	h := start(t, "{}", fmt.Sprintf("tls: {cert_file: %q, key_file: %q}", p.serverCert, p.serverKey),
		fmt.Sprintf("auth: {secrets_file: %q}", writeSecrets(t, secret)))
	proxy, proxyURL := startProxy(t)
	body, _ := json.Marshal(mmMessage("android_rn", "tok"))
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: tlsTo(p)}}
	resp, err := client.Post("https://mattermost:"+secret+"@"+h.srv.Addr()+"/api/v1/send_push", "", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || proxy.connects != 1 || h.google.Delivered() != 1 {
		t.Errorf("HTTP %d, CONNECTs %d, delivered %d", resp.StatusCode, proxy.connects, h.google.Delivered())
	}
}

func TestAllowedNetworksAndTrustedProxies(t *testing.T) {
	tests := []struct {
		name, auth, xff string
		code            int
	}{
		{"peer in the allowed network", "{allowed_networks: [127.0.0.0/8]}", "", 200},
		{"peer outside", "{allowed_networks: [10.0.0.0/8]}", "", 403},
		{"X-Forwarded-For ignored from an untrusted peer", "{allowed_networks: [10.0.0.0/8]}", "10.1.2.3", 403},
		{"X-Forwarded-For believed from a trusted proxy", "{allowed_networks: [10.0.0.0/8], trusted_proxies: [127.0.0.1/32]}", "10.1.2.3", 200},
		{"spoofed left hop is not the client", "{allowed_networks: [10.0.0.0/8], trusted_proxies: [127.0.0.1]}", "10.9.9.9, 192.0.2.7", 403},
		{"a chain of trusted proxies", "{allowed_networks: [10.0.0.0/8], trusted_proxies: [127.0.0.1, 192.0.2.0/24]}", "10.1.2.3, 192.0.2.7", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, "{}", "auth: "+tt.auth)
			var header http.Header
			if tt.xff != "" {
				header = http.Header{"X-Forwarded-For": {tt.xff}}
			}
			code, answer := mattermostPush(t, h.url, nil, header, mmMessage("apple_rn", "tok"))
			if code != tt.code {
				t.Errorf("HTTP %d %v, want %d", code, answer, tt.code)
			}
		})
	}
}

func TestRateAndInFlightLimits(t *testing.T) {
	h := start(t, "{}", "limits: {rate_per_client: 1, burst: 2}")
	var codes []int
	var retryAfter string
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("POST", h.url+"/api/v1/send_push", strings.NewReader(`{"platform":"apple_rn","server_id":"s","device_id":"d"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		retryAfter = resp.Header.Get("Retry-After")
	}
	if fmt.Sprint(codes) != "[200 200 429]" || retryAfter != "1" {
		t.Errorf("codes %v, Retry-After %q; want [200 200 429] and 1", codes, retryAfter)
	}

	h = start(t, "{}", "limits: {max_in_flight: 1}")
	h.apple.Fail(sandbox.Fault{Delay: 500 * time.Millisecond})
	first := make(chan int)
	go func() {
		code, _ := h.push(mmMessage("apple_rn", "slow"))
		first <- code
	}()
	for len(h.apple.Requests()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	req, _ := http.NewRequest("POST", h.url+"/api/v1/send_push", strings.NewReader(`{}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("beyond max_in_flight: HTTP %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code := <-first; code != 200 {
		t.Errorf("the request in flight got HTTP %d", code)
	}
}

func TestSlowClientsAreCutOff(t *testing.T) {
	h := start(t, "{}", "limits: {read_header_timeout: 200ms, read_timeout: 400ms}")
	for _, tt := range []struct{ name, send string }{
		{"headers never finish", "POST /api/v1/send_push HTTP/1.1\r\nHost: relay\r\nX-Slow: "},
		{"body never comes", "POST /api/v1/send_push HTTP/1.1\r\nHost: relay\r\nContent-Length: 100\r\n\r\n{"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", h.srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			io.WriteString(conn, tt.send)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, bufio.NewReader(conn)) // until the relay hangs up
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("the relay held a slow client for %s", took)
			}
		})
	}
}

func TestReloadSwapsSecretsAndCertificates(t *testing.T) {
	first := newPKI(t)
	secrets := writeSecrets(t, secret)
	h := start(t, "{}", fmt.Sprintf("tls: {cert_file: %q, key_file: %q}", first.serverCert, first.serverKey),
		fmt.Sprintf("auth: {secrets_file: %q}", secrets))
	push := func(p pki, s string) (int, error) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsTo(p)}}
		body, _ := json.Marshal(mmMessage("apple_rn", "tok"))
		resp, err := client.Post("https://mattermost:"+s+"@"+h.srv.Addr()+"/api/v1/send_push", "", strings.NewReader(string(body)))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := push(first, secret); code != 200 {
		t.Fatalf("before reload: %d %v", code, err)
	}

	second := newPKI(t)
	const newSecret = "n3w-s3cr3t-0123456789ab"
	for src, dst := range map[string]string{second.serverCert: first.serverCert, second.serverKey: first.serverKey} {
		b, _ := os.ReadFile(src)
		os.WriteFile(dst, b, 0o600)
	}
	os.WriteFile(secrets, []byte(newSecret+"\n"), 0o600)
	cfg, err := relay.LoadConfig(h.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := push(first, newSecret); err == nil {
		t.Error("the old certificate is still served after reload")
	}
	if code, err := push(second, secret); err != nil || code != 401 {
		t.Errorf("the old secret after reload: %d %v", code, err)
	}
	if code, err := push(second, newSecret); err != nil || code != 200 {
		t.Errorf("the new secret and certificate after reload: %d %v", code, err)
	}

	os.WriteFile(secrets, []byte("short\n"), 0o600)
	cfg, _ = relay.LoadConfig(h.path, nil)
	if err := h.srv.Reload(cfg); err == nil || !strings.Contains(err.Error(), "auth.secrets_file: line 1") {
		t.Errorf("a bad secrets file: %v", err)
	}
	if code, err := push(second, newSecret); err != nil || code != 200 {
		t.Errorf("a refused reload changed the secrets: %d %v", code, err)
	}
}
