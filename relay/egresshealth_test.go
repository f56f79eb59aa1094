package relay_test

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers/egress/egresstest"
	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay"
)

// proxyPassword is the right password of the test proxies; no answer,
// log line, metric or /readyz problem may show it, nor the wrong one.
const (
	proxyPassword = "pr0xy-s3cret"
	wrongPassword = "wr0ng-pr0xy-s3cret"
)

// egressRig is a relay whose apps reach the look-alikes through egress
// settings of the test's choosing; reconfigure reloads it with others.
type egressRig struct {
	*harness
	dir     string
	creds   sandbox.Credentials
	apnsURL string // the APNs app's endpoint
	fcmURL  string
}

// startEgress starts a relay with the egress section egressYAML returns
// (without its braces) for the look-alikes' credentials; apnsURL, when not
// empty, replaces the APNs look-alike as the APNs app's endpoint.
func startEgress(t *testing.T, egressYAML func(sandbox.Credentials) string, apnsURL string) *egressRig {
	t.Helper()
	apple, google := sandbox.NewAPNs(), sandbox.NewFCM()
	t.Cleanup(apple.Close)
	t.Cleanup(google.Close)
	dir := t.TempDir()
	creds, err := sandbox.WriteCredentials(dir, apple, google)
	if err != nil {
		t.Fatal(err)
	}
	if apnsURL == "" {
		apnsURL = apple.URL()
	}
	r := &egressRig{dir: dir, creds: creds, apnsURL: apnsURL, fcmURL: google.URL()}
	path := r.write(t, egressYAML(creds))
	cfg, err := relay.LoadConfig(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := relay.NewServer(cfg, relay.TestProviders, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })
	r.harness = &harness{t: t, logs: logs, apple: apple, google: google, srv: srv, url: "http://" + srv.Addr(), path: path}
	return r
}

// write writes the relay's config with egressYAML and returns its path.
func (r *egressRig) write(t *testing.T, egressYAML string) string {
	t.Helper()
	yaml := fmt.Sprintf(`
listen: 127.0.0.1:0
metrics: {listen: 127.0.0.1:0}
policy: {mode: id_only}
delivery: {timeout: 2s, backoff: {initial: 50ms, max: 200ms}}
spool: {dir: %q}
egress: {%s}
apps:
  - platform: apple_rn
    apns: {topic: com.mattermost.rn, auth_key_file: %q, key_id: %s, team_id: %s, endpoint: %q}
  - platform: android_rn
    fcm: {service_account_file: %q, endpoint: %q}
log: {level: info}
`, filepath.Join(r.dir, "spool"), egressYAML, r.creds.APNsKeyFile, r.creds.KeyID, r.creds.TeamID, r.apnsURL,
		r.creds.ServiceAccountFile, r.fcmURL)
	path := filepath.Join(r.dir, "pushrelay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// reconfigure reloads the relay with another egress section, as SIGHUP
// does.
func (r *egressRig) reconfigure(t *testing.T, egressYAML string) {
	t.Helper()
	cfg, err := relay.LoadConfig(r.write(t, egressYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
}

// readyz returns /readyz's status code and problems.
func (r *egressRig) readyz(t *testing.T) (int, []string) {
	t.Helper()
	resp, err := http.Get(r.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status   string   `json:"status"`
		Problems []string `json:"problems"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("/readyz: %v: %s", err, raw)
	}
	return resp.StatusCode, body.Problems
}

// metricValue returns the value of the series line starts (name and
// labels), 0 when it is absent.
func (r *egressRig) metricValue(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return v
}

// egressLogLines counts the error lines about app's misconfigured egress.
func (r *egressRig) egressLogLines(t *testing.T, app string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(r.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec["level"] == "ERROR" && rec["app"] == app && strings.HasPrefix(fmt.Sprint(rec["msg"]), "egress misconfigured") {
			n++
		}
	}
	return n
}

// loudLines counts the lines about app at warn level or above.
func (r *egressRig) loudLines(t *testing.T, app string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(r.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && (rec["level"] == "WARN" || rec["level"] == "ERROR") && rec["app"] == app {
			n++
		}
	}
	return n
}

// noSecrets fails the test if the proxy's password, right or wrong, shows
// in the logs, the metrics or /readyz.
func (r *egressRig) noSecrets(t *testing.T) {
	t.Helper()
	resp, err := http.Get("http://" + r.srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_, problems := r.readyz(t)
	for what, text := range map[string]string{"log": r.logs.String(), "metrics": string(metrics), "readyz": strings.Join(problems, "\n")} {
		if strings.Contains(text, proxyPassword) || strings.Contains(text, "wr0ng") {
			t.Errorf("the %s shows a proxy password", what)
		}
	}
}

// pushMany sends n pushes to platform and returns the answers' statuses
// and errors.
func (r *egressRig) pushMany(t *testing.T, platform, prefix string, n int) (statuses, errs []string) {
	t.Helper()
	for i := range n {
		m := mmMessage(platform, fmt.Sprintf("%s-tok-%d", prefix, i))
		m.AckId = fmt.Sprintf("%s-ack-%d", prefix, i)
		code, answer := r.push(m)
		if code != 200 {
			t.Fatalf("push %d: HTTP %d %v", i, code, answer)
		}
		statuses = append(statuses, answer["status"])
		errs = append(errs, answer["error"])
	}
	return statuses, errs
}

func all(ss []string, want string) bool {
	for _, s := range ss {
		if s != want {
			return false
		}
	}
	return len(ss) > 0
}

// startWrongPassword starts a proxy of kind (http or socks5) requiring
// the user relay with proxyPassword, and a relay whose egress.proxy gives
// it wrongPassword; the look-alikes' CA is trusted, so that only the proxy
// login is wrong.
func startWrongPassword(t *testing.T, kind string) (*egressRig, *egresstest.Proxy) {
	t.Helper()
	opts := egresstest.Options{User: "relay", Password: proxyPassword}
	proxy := egresstest.NewHTTP(t, opts)
	if kind == "socks5" {
		proxy = egresstest.NewSOCKS5(t, opts)
	}
	r := startEgress(t, func(c sandbox.Credentials) string {
		return fmt.Sprintf("proxy: %q, ca_file: %q", proxy.URLWith(url.UserPassword("relay", wrongPassword)), c.CAFile)
	}, "")
	return r, proxy
}

// TestProxyRefusingTheCredentials: with a wrong egress.proxy password, an
// HTTP proxy answers 407 and a SOCKS5 proxy refuses the authentication.
// Every push answers FAIL naming the proxy and egress.proxy, nothing is
// spooled, /readyz fails with the reason, the metric counts each, and one
// error line per app says so; no password shows anywhere. Once the proxy
// takes the relay's credentials (the proxy's users changed), a probe that
// /readyz starts gets through and /readyz is 200 again, with no send; after
// a reload with the right password it is 200 at once.
func TestProxyRefusingTheCredentials(t *testing.T) {
	relay.SetEgressProbeEvery(t, 10*time.Millisecond)
	for _, kind := range []string{"http", "socks5"} {
		t.Run(kind, func(t *testing.T) {
			r, proxy := startWrongPassword(t, kind)

			const n = 6
			for _, app := range []string{"apple_rn", "android_rn"} {
				statuses, errs := r.pushMany(t, app, "wrong-"+app, n)
				if !all(statuses, "FAIL") {
					t.Fatalf("%s: answers %v, want FAIL each", app, statuses)
				}
				for _, e := range errs {
					if !strings.Contains(e, kind+"://"+proxy.Addr()) || !strings.Contains(e, "egress.proxy") {
						t.Errorf("%s: FAIL error %q does not name the proxy and egress.proxy", app, e)
						break
					}
				}
				if got := r.metricValue(t, `pushrelay_egress_errors_total{app="`+app+`",reason="proxy_auth"}`); got < n {
					t.Errorf("%s: pushrelay_egress_errors_total{reason=proxy_auth} = %v, want at least %d", app, got, n)
				}
				if got := r.egressLogLines(t, app); got != 1 {
					t.Errorf("%s: %d error lines about the egress in one window, want 1", app, got)
				}
				if got := r.loudLines(t, app); got != 1 {
					t.Errorf("%s: %d lines at warn or error level, want the one error line", app, got)
				}
			}
			if spooled := r.metricValue(t, "pushrelay_spool_messages"); spooled != 0 || metric(t, r.harness, `outcome="spooled"`) {
				t.Errorf("%v notifications spooled on a configuration error", spooled)
			}
			code, problems := r.readyz(t)
			if code != http.StatusServiceUnavailable || len(problems) != 2 ||
				!strings.HasPrefix(problems[0], "app android_rn: egress misconfigured: ") ||
				!strings.HasPrefix(problems[1], "app apple_rn: egress misconfigured: ") ||
				!strings.Contains(problems[1], kind+"://"+proxy.Addr()) || !strings.Contains(problems[1], "check egress.proxy credentials (the user and password)") {
				t.Errorf("/readyz = %d %q, want 503 naming the proxy and the fix for each app", code, problems)
			}
			r.noSecrets(t)

			// While the proxy still refuses, the probes that /readyz
			// starts fail too: still not ready.
			for range 5 {
				time.Sleep(20 * time.Millisecond)
				if code, _ := r.readyz(t); code != http.StatusServiceUnavailable {
					t.Fatalf("/readyz = %d while the proxy still refuses the credentials, want 503", code)
				}
			}

			// The proxy now takes what the relay sends (its users
			// changed): a probe through it, started by /readyz, clears
			// the mark without any send, as a relay that its load
			// balancer took out of service gets none.
			proxy.SetCredentials("relay", wrongPassword)
			waitFor(t, "/readyz 200 once a probe gets through the proxy", 5*time.Second, func() bool {
				code, _ := r.readyz(t)
				return code == http.StatusOK
			})

			// The proxy's users change back: sends fail again. A reload
			// with the right password: ready at once, and sends go.
			proxy.SetCredentials("relay", proxyPassword)
			if statuses, _ := r.pushMany(t, "apple_rn", "wrong-again", 1); !all(statuses, "FAIL") {
				t.Fatalf("with the old password again: %v, want FAIL", statuses)
			}
			r.reconfigure(t, fmt.Sprintf("proxy: %q, ca_file: %q", proxy.URL(), r.creds.CAFile))
			if code, problems := r.readyz(t); code != http.StatusOK {
				t.Errorf("/readyz after the reload = %d %q, want 200", code, problems)
			}
			for _, app := range []string{"apple_rn", "android_rn"} {
				if statuses, _ := r.pushMany(t, app, "reloaded-"+app, 2); !all(statuses, "OK") {
					t.Errorf("%s after the reload: %v", app, statuses)
				}
			}
			if r.apple.Delivered() != 2 || r.google.Delivered() != 2 {
				t.Errorf("delivered: APNs %d, FCM %d; want 2 and 2", r.apple.Delivered(), r.google.Delivered())
			}
			r.noSecrets(t)
		})
	}
}

// TestMisconfiguredEgressNotRetriedPerPush: once the proxy refused the
// relay's login, the next pushes are answered FAIL at once, without
// logging in again: a wrong password tried per push (dozens of times a
// second) would lock the proxy account in a directory behind it. Only the
// first push of each app reaches the proxy; the probes come one per
// egressProbeEvery at most, from the pushes themselves, not only /readyz.
func TestMisconfiguredEgressNotRetriedPerPush(t *testing.T) {
	relay.SetEgressProbeEvery(t, time.Hour) // no probe within the test
	for _, kind := range []string{"http", "socks5"} {
		t.Run(kind, func(t *testing.T) {
			r, proxy := startWrongPassword(t, kind)
			const n = 40
			for _, app := range []string{"apple_rn", "android_rn"} {
				statuses, errs := r.pushMany(t, app, "held-"+app, n)
				if !all(statuses, "FAIL") || !strings.Contains(errs[n-1], "check egress.proxy credentials") {
					t.Fatalf("%s: answers %v (%q), want FAIL naming the fix each", app, statuses, errs[n-1])
				}
				if got := r.metricValue(t, `pushrelay_egress_errors_total{app="`+app+`",reason="proxy_auth"}`); got != n {
					t.Errorf("%s: pushrelay_egress_errors_total{reason=proxy_auth} = %v, want %d: each held answer counts", app, got, n)
				}
			}
			// One refused login per app (FCM's is its OAuth token's).
			if got := len(proxy.Requests()); got > 2 {
				t.Errorf("the proxy saw %d logins for %d pushes, want one per app", got, 2*n)
			}
			if code, _ := r.readyz(t); code != http.StatusServiceUnavailable {
				t.Errorf("/readyz = %d, want 503", code)
			}
			// A reload with the right password sends at once.
			r.reconfigure(t, fmt.Sprintf("proxy: %q, ca_file: %q", proxy.URL(), r.creds.CAFile))
			if statuses, _ := r.pushMany(t, "apple_rn", "fixed", 2); !all(statuses, "OK") {
				t.Errorf("after the reload: %v, want OK", statuses)
			}
		})
	}
}

// TestTargetCertificateMisconfigured: an APNs endpoint whose certificate
// is not trusted (a TLS-inspecting proxy re-signing it) or is for another
// name answers FAIL with tls_untrusted or tls_name, fails /readyz, and
// spools nothing.
func TestTargetCertificateMisconfigured(t *testing.T) {
	// An HTTP/2 server whose certificate is for 127.0.0.1 and example.com.
	other := httptest.NewUnstartedServer(http.NotFoundHandler())
	other.EnableHTTP2 = true
	other.StartTLS()
	defer other.Close()
	port := strconv.Itoa(other.Listener.Addr().(*net.TCPAddr).Port)
	otherCA := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, egress, endpoint, reason, fix string
	}{
		{"not trusted", "", "https://127.0.0.1:" + port, "tls_untrusted", "add its CA to egress.ca_file"},
		{"another name", "ca_file: " + strconv.Quote(otherCA), "https://localhost:" + port, "tls_name", "not for localhost"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := startEgress(t, func(sandbox.Credentials) string { return tt.egress }, tt.endpoint)
			statuses, errs := r.pushMany(t, "apple_rn", "tls", 3)
			if !all(statuses, "FAIL") || !strings.Contains(errs[0], tt.fix) {
				t.Fatalf("answers %v %q, want FAIL saying %q", statuses, errs[0], tt.fix)
			}
			if got := r.metricValue(t, `pushrelay_egress_errors_total{app="apple_rn",reason="`+tt.reason+`"}`); got != 3 {
				t.Errorf("pushrelay_egress_errors_total{reason=%s} = %v, want 3", tt.reason, got)
			}
			if code, problems := r.readyz(t); code != http.StatusServiceUnavailable || len(problems) != 1 || !strings.Contains(problems[0], tt.fix) {
				t.Errorf("/readyz = %d %q", code, problems)
			}
			if metric(t, r.harness, `outcome="spooled"`) {
				t.Error("spooled on a configuration error")
			}
		})
	}
}

// TestProxyRestartedMidRun: a proxy that restarts is down, not
// misconfigured. Pushes during the restart answer OK (spooled), none FAIL,
// /readyz stays 200; when the proxy is back, each is delivered exactly
// once. A redelivery that meets a misconfiguration (the proxy came back
// asking for credentials) keeps its notification for later instead of
// dropping it.
func TestProxyRestartedMidRun(t *testing.T) {
	proxy := egresstest.NewHTTP(t, egresstest.Options{})
	r := startEgress(t, func(c sandbox.Credentials) string {
		return fmt.Sprintf("proxy: %q, ca_file: %q", proxy.URL(), c.CAFile)
	}, "")
	if statuses, _ := r.pushMany(t, "apple_rn", "before", 3); !all(statuses, "OK") {
		t.Fatalf("before the restart: %v", statuses)
	}

	proxy.Stop()
	const n = 10
	for _, app := range []string{"apple_rn", "android_rn"} {
		statuses, errs := r.pushMany(t, app, "during-"+app, n)
		if !all(statuses, "OK") {
			t.Fatalf("%s during the restart: %v %q, want OK (spooled) each", app, statuses, errs)
		}
	}
	if code, problems := r.readyz(t); code != http.StatusOK {
		t.Errorf("/readyz while the proxy restarts = %d %q, want 200", code, problems)
	}
	if !metric(t, r.harness, `outcome="spooled"`) {
		t.Error("nothing spooled while the proxy was down")
	}

	// The proxy comes back asking for credentials the relay does not
	// have: redeliveries meet a misconfiguration and keep their entries.
	proxy.SetCredentials("relay", proxyPassword)
	if err := proxy.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "redeliveries meeting the 407", 15*time.Second, func() bool {
		return r.metricValue(t, `pushrelay_egress_errors_total{app="apple_rn",reason="proxy_auth"}`) >= n
	})
	if got := r.metricValue(t, "pushrelay_spool_messages"); got != 2*n {
		t.Errorf("%v notifications kept, want %d: a misconfiguration must not drop accepted notifications", got, 2*n)
	}
	if metric(t, r.harness, `outcome="failed"`) {
		t.Error("a kept notification was counted failed")
	}
	if code, _ := r.readyz(t); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while redeliveries meet a 407 = %d, want 503", code)
	}

	// The proxy takes the relay again: everything is delivered, once.
	proxy.SetCredentials("", "")
	waitFor(t, "every kept notification delivered", 20*time.Second, func() bool {
		return len(deliveredAcks(t, okAPNs(r.harness))) == 3+n && len(deliveredAcks(t, okFCM(r.harness))) == n
	})
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show
	for ack, times := range deliveredAcks(t, append(okAPNs(r.harness), okFCM(r.harness)...)) {
		if times != 1 {
			t.Errorf("%s delivered %d times", ack, times)
		}
	}
	if got := r.metricValue(t, "pushrelay_spool_messages"); got != 0 {
		t.Errorf("%v notifications still kept", got)
	}
	waitFor(t, "/readyz 200 once sends get through", 5*time.Second, func() bool {
		code, _ := r.readyz(t)
		return code == http.StatusOK
	})
}

// TestEndpointAnsweringInTheProvidersPlace: a reverse proxy in front of
// APNs that does not route its path answers its own 404, without APNs'
// reason. Each push answers FAIL saying so and naming the endpoint key;
// it is counted as wrong_endpoint and logged once per window, not once per
// push; /readyz stays ready (no probe could tell when the routes are
// fixed); nothing is spooled and no token is called dead.
func TestEndpointAnsweringInTheProvidersPlace(t *testing.T) {
	proxy := httptest.NewUnstartedServer(http.NotFoundHandler())
	proxy.EnableHTTP2 = true
	proxy.StartTLS()
	defer proxy.Close()
	ca := filepath.Join(t.TempDir(), "proxy-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startEgress(t, func(sandbox.Credentials) string { return "ca_file: " + strconv.Quote(ca) }, proxy.URL)
	const n = 20
	statuses, errs := r.pushMany(t, "apple_rn", "routed-elsewhere", n)
	if !all(statuses, "FAIL") || !strings.Contains(errs[0], "answered HTTP 404, not as APNs does") ||
		!strings.Contains(errs[0], "apps[].apns.endpoint") {
		t.Fatalf("answers %v %q, want FAIL saying the 404 is not APNs' and naming the endpoint key", statuses, errs[0])
	}
	if got := r.metricValue(t, `pushrelay_egress_errors_total{app="apple_rn",reason="wrong_endpoint"}`); got != n {
		t.Errorf("pushrelay_egress_errors_total{reason=wrong_endpoint} = %v, want %d", got, n)
	}
	if got := r.loudLines(t, "apple_rn"); got != 1 {
		t.Errorf("%d lines at warn or error level for %d pushes, want one", got, n)
	}
	if code, problems := r.readyz(t); code != http.StatusOK {
		t.Errorf("/readyz = %d %q, want 200", code, problems)
	}
	if metric(t, r.harness, `outcome="spooled"`) || metric(t, r.harness, `outcome="removed"`) {
		t.Error("spooled, or a token called dead, on an answer that is not APNs'")
	}
}
