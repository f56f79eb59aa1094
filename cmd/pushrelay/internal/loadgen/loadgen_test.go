package loadgen_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/loadgen"
	"github.com/pushrelay/pushrelay/relay/wire"
)

func TestBodiesFollowTheMix(t *testing.T) {
	bodies := loadgen.Bodies(10000, loadgen.DefaultMix(), "apple_rn", "android_rn")
	var apple, clear, idLoaded, dead int
	for _, b := range bodies {
		var n wire.Notification
		if err := json.Unmarshal(b, &n); err != nil {
			t.Fatal(err)
		}
		if n.Platform == "apple_rn" {
			apple++
		}
		if n.Type == wire.TypeClear {
			clear++
		}
		if n.IsIDLoaded {
			idLoaded++
		}
		if strings.HasPrefix(n.DeviceID, "dead") {
			dead++
		}
	}
	within := func(what string, got, want int) {
		if got < want*8/10 || got > want*12/10 {
			t.Errorf("%s: %d of 10000, want about %d", what, got, want)
		}
	}
	within("iOS", apple, 5000)
	within("clear", clear, 1000)
	within("id_loaded", idLoaded, 1000)
	within("dead tokens", dead, 500)
}

func TestRunCountsAnswersAndMeasuresAProcess(t *testing.T) {
	var seen, liveOK, dead, deadRemove atomic.Int64
	var mu sync.Mutex
	acks := map[string]bool{}
	var liveOKIDs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n wire.Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("a body is not a notification: %v", err)
		}
		seen.Add(1)
		mu.Lock()
		if acks[n.AckID] {
			t.Errorf("ack id %s sent twice", n.AckID)
		}
		acks[n.AckID] = true
		mu.Unlock()
		isDead := strings.HasPrefix(n.DeviceID, "dead")
		if isDead {
			dead.Add(1)
		}
		switch {
		case isDead && n.AckID[len(n.AckID)-1]%2 == 0:
			deadRemove.Add(1)
			io.WriteString(w, `{"status":"REMOVE"}`)
		case n.Type == wire.TypeClear:
			io.WriteString(w, `{"status":"FAIL","error":"x"}`)
		default: // including half the dead tokens: a relay that spooled them
			if !isDead {
				liveOK.Add(1)
				mu.Lock()
				liveOKIDs = append(liveOKIDs, n.AckID)
				mu.Unlock()
			}
			io.WriteString(w, `{"status":"OK"}`)
		}
	}))
	defer srv.Close()
	rep, err := loadgen.Run(context.Background(), loadgen.Options{URL: srv.URL, Concurrency: 4, Requests: 500,
		Mix: loadgen.DefaultMix(), APNsPlatform: "apple_rn", FCMPlatform: "android_rn", PID: os.Getpid(), KeepAcceptedIDs: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 500 || seen.Load() != 500 || rep.OK+rep.Remove+rep.Fail != 500 || rep.Remove == 0 || rep.Fail == 0 {
		t.Errorf("report %+v, server saw %d", rep, seen.Load())
	}
	if rep.LiveOK != liveOK.Load() || rep.LiveOK >= rep.OK {
		t.Errorf("LiveOK %d of OK %d, want %d (the server's count), fewer than OK", rep.LiveOK, rep.OK, liveOK.Load())
	}
	slices.Sort(rep.AcceptedIDs)
	slices.Sort(liveOKIDs)
	if !slices.Equal(rep.AcceptedIDs, liveOKIDs) {
		t.Errorf("AcceptedIDs: %d ids, want the %d the server answered OK for live tokens", len(rep.AcceptedIDs), len(liveOKIDs))
	}
	if rep.Dead != dead.Load() || rep.DeadRemove != deadRemove.Load() || rep.Dead == rep.DeadRemove ||
		rep.DeadRemoveShare() != float64(deadRemove.Load())/float64(dead.Load()) {
		t.Errorf("dead tokens: %d answers, %d REMOVE; want %d and %d (the server's counts)", rep.Dead, rep.DeadRemove, dead.Load(), deadRemove.Load())
	}
	if rep.P50 <= 0 || rep.P99 < rep.P50 || rep.Max < rep.P99 || rep.PeakRSS <= 0 || len(rep.RSS) == 0 || rep.RSS[0] <= 0 {
		t.Errorf("latencies or process figures missing: %+v", rep)
	}
	// This process is the server too: it read each request and wrote each
	// answer.
	if rep.Reads < 500 || rep.Writes < 500 {
		t.Errorf("%d reads and %d writes counted, want at least one of each per request", rep.Reads, rep.Writes)
	}

	rep, err = loadgen.Run(context.Background(), loadgen.Options{URL: srv.URL, Concurrency: 2, Duration: 200 * time.Millisecond, Mix: loadgen.DefaultMix()})
	if err != nil || rep.Requests == 0 || rep.Requests != seen.Load()-500 || rep.Elapsed > time.Second || rep.RSS != nil {
		t.Errorf("duration-bound run: %+v %v; the server saw %d", rep, err, seen.Load()-500)
	}
	if _, err := loadgen.Run(context.Background(), loadgen.Options{URL: srv.URL, Concurrency: 1}); err == nil {
		t.Error("a run without bounds was accepted")
	}
}

// printedLine returns the line of rep.Print that starts with prefix, or "".
func printedLine(rep loadgen.Report, prefix string) string {
	var out strings.Builder
	rep.Print(&out)
	for line := range strings.Lines(out.String()) {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSuffix(line, "\n")
		}
	}
	return ""
}

func TestReportPrintsSystemCallsPerNotification(t *testing.T) {
	tests := []struct {
		name string
		rep  loadgen.Report
		want string // the syscalls line; "" for none
	}{
		{"no process", loadgen.Report{Requests: 4}, ""},
		{"counted", loadgen.Report{Requests: 4, Reads: 10, Writes: 6}, "syscalls   2.50 reads and 1.50 writes per notification"},
		{"no requests", loadgen.Report{Reads: 10, Writes: 6}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := printedLine(tc.rep, "syscalls"); got != tc.want {
				t.Errorf("syscalls line %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReportPrintsTheRSSOverTheRun(t *testing.T) {
	mb := func(v float64) int64 { return int64(v * (1 << 20)) }
	tests := []struct {
		name    string
		samples []int64
		want    string // the rss line; "" for none
	}{
		{"no process", nil, ""},
		{"one sample", []int64{mb(30)}, "rss        sampled every second of this run: at 10% of the run 30.0 MB, at 50% 30.0 MB, at end 30.0 MB, highest sample 30.0 MB"},
		{"ten seconds", []int64{mb(31.2), mb(31.5), mb(31.6), mb(31.8), mb(31.9), mb(33.1), mb(32.5), mb(32.2), mb(32.1), mb(32.0)},
			"rss        sampled every second of this run: at 10% of the run 31.2 MB, at 50% 31.9 MB, at end 32.0 MB, highest sample 33.1 MB"},
		{"three seconds", []int64{mb(10), mb(20), mb(15)}, "rss        sampled every second of this run: at 10% of the run 10.0 MB, at 50% 20.0 MB, at end 15.0 MB, highest sample 20.0 MB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := printedLine(loadgen.Report{RSS: tc.samples}, "rss"); got != tc.want {
				t.Errorf("rss line %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAccounting(t *testing.T) {
	tests := []struct {
		a                loadgen.Accounting
		lost, duplicates int64
		want             string
	}{
		{loadgen.Accounting{}, 0, 0, "accepted OK for live tokens 0, delivered upstream 0: lost 0, duplicates 0"},
		{loadgen.Accounting{Accepted: 100, Delivered: 100}, 0, 0, "accepted OK for live tokens 100, delivered upstream 100: lost 0, duplicates 0"},
		{loadgen.Accounting{Accepted: 100, Delivered: 97}, 3, 0, "accepted OK for live tokens 100, delivered upstream 97: lost 3, duplicates 0"},
		{loadgen.Accounting{Accepted: 100, Delivered: 102}, 0, 2, "accepted OK for live tokens 100, delivered upstream 102: lost 0, duplicates 2"},
	}
	for _, tc := range tests {
		if tc.a.Lost() != tc.lost || tc.a.Duplicates() != tc.duplicates || tc.a.String() != tc.want {
			t.Errorf("%+v: lost %d, duplicates %d, %q; want %d, %d, %q", tc.a, tc.a.Lost(), tc.a.Duplicates(), tc.a.String(), tc.lost, tc.duplicates, tc.want)
		}
	}
}

// metricsServer serves the relay's metrics page with the spool depths in
// turn, the last one for good.
func metricsServer(t *testing.T, depths ...string) *loadgen.Rig {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		d := depths[min(int(calls.Add(1))-1, len(depths)-1)]
		if d == "500" {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "# HELP pushrelay_spool_messages Notifications kept for redelivery.\n"+
			"pushrelay_spool_messages_total_fake 7\n"+d+"go_goroutines 12\n")
	}))
	t.Cleanup(srv.Close)
	return &loadgen.Rig{MetricsURL: srv.URL}
}

func TestSpoolMessages(t *testing.T) {
	tests := []struct {
		name, page string
		want       int64
		wantErr    string
	}{
		{"empty", "pushrelay_spool_messages 0\n", 0, ""},
		{"some", "pushrelay_spool_messages 1234\n", 1234, ""},
		{"unreadable spool", "pushrelay_spool_messages -1\n", 0, `pushrelay_spool_messages is "-1"`},
		{"no gauge", "", 0, "no pushrelay_spool_messages"},
		{"an error page", "500", 0, "500 Internal Server Error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := metricsServer(t, tc.page).SpoolMessages(t.Context())
			if got != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("SpoolMessages() = %d, %v; want %d, %q", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestDrain(t *testing.T) {
	rig := metricsServer(t, "pushrelay_spool_messages 2\n", "pushrelay_spool_messages 1\n", "pushrelay_spool_messages 0\n")
	var progress strings.Builder
	if err := rig.Drain(t.Context(), 10*time.Second, &progress); err != nil {
		t.Fatalf("Drain() = %v", err)
	}
	if !strings.Contains(progress.String(), "1 left") || !strings.HasSuffix(progress.String(), "\n") {
		t.Errorf("progress %q", progress.String())
	}

	rig = metricsServer(t, "pushrelay_spool_messages 5\n")
	if err := rig.Drain(t.Context(), 300*time.Millisecond, nil); err == nil || !strings.Contains(err.Error(), "still held 5 notifications") {
		t.Errorf("Drain() of a spool that stays full = %v", err)
	}
	rig = metricsServer(t, "500")
	if err := rig.Drain(t.Context(), 10*time.Second, nil); err == nil || !strings.Contains(err.Error(), "spool depth") {
		t.Errorf("Drain() without metrics = %v", err)
	}
}

func TestSetUpstreamRefusesImpossibleValues(t *testing.T) {
	for _, tc := range []struct {
		latency time.Duration
		faults  float64
	}{{-time.Millisecond, 0}, {0, -0.1}, {0, 1}, {20 * time.Millisecond, 1.5}} {
		if err := new(loadgen.Rig).SetUpstream(tc.latency, tc.faults); err == nil {
			t.Errorf("SetUpstream(%v, %v) accepted", tc.latency, tc.faults)
		}
	}
}

// TestOpenLoop checks that a run at a rate sends at that rate, and that
// a request's latency counts from when it was due, not from when a
// sender got to it.
func TestOpenLoop(t *testing.T) {
	tests := []struct {
		name       string
		serve      time.Duration // how long the server takes per request
		senders    int
		rate       float64
		minN, maxN int64         // requests sent in the run's 400ms
		minP99     time.Duration // the p99 latency at least
		maxP50     time.Duration // the p50 latency at most
	}{
		{name: "the senders keep up", serve: 0, senders: 4, rate: 250, minN: 80, maxN: 101, maxP50: 50 * time.Millisecond},
		// One sender, 20ms a request, 200 due a second: each request waits
		// for the ones before it, and that wait is latency.
		{name: "the senders fall behind", serve: 20 * time.Millisecond, senders: 1, rate: 200, minN: 10, maxN: 25, minP99: 100 * time.Millisecond, maxP50: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(tt.serve)
				io.WriteString(w, `{"status":"OK"}`)
			}))
			defer srv.Close()
			rep, err := loadgen.Run(context.Background(), loadgen.Options{URL: srv.URL, Concurrency: tt.senders, Rate: tt.rate,
				Duration: 400 * time.Millisecond, Mix: loadgen.DefaultMix()})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Requests < tt.minN || rep.Requests > tt.maxN {
				t.Errorf("%d requests, want %d to %d", rep.Requests, tt.minN, tt.maxN)
			}
			if rep.P99 < tt.minP99 || rep.P50 > tt.maxP50 {
				t.Errorf("p50 %s, p99 %s; want p99 at least %s, p50 at most %s", rep.P50, rep.P99, tt.minP99, tt.maxP50)
			}
		})
	}
	if _, err := loadgen.Run(context.Background(), loadgen.Options{URL: "http://127.0.0.1:1", Concurrency: 1, Rate: -1, Requests: 1}); err == nil {
		t.Error("a negative rate was accepted")
	}
}

// TestRequestsLookLikeMattermosts checks what the relay sees: HTTP/1.1
// keep-alive, Mattermost's User-Agent, no Content-Type, and the URL's user
// information as Basic authorization (never in the request line).
func TestRequestsLookLikeMattermosts(t *testing.T) {
	var conns sync.Map
	var bad atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns.Store(r.RemoteAddr, true)
		user, pass, ok := r.BasicAuth()
		switch {
		case r.Proto != "HTTP/1.1" || r.Method != http.MethodPost || r.URL.Path != "/api/v1/send_push":
			bad.Store(r.Proto + " " + r.Method + " " + r.URL.Path)
		case r.Header.Get("User-Agent") != "Mattermost-Bot/1.1" || r.Header.Get("Content-Type") != "":
			bad.Store("headers " + strings.Join(r.Header.Values("User-Agent"), ",") + " " + r.Header.Get("Content-Type"))
		case !ok || user != "mm" || pass != "s3cret":
			bad.Store("authorization " + r.Header.Get("Authorization"))
		case strings.Contains(r.RequestURI, "s3cret"):
			bad.Store("the secret is in the request line")
		}
		io.WriteString(w, `{"status":"OK"}`)
	}))
	srv.Start()
	defer srv.Close()
	url := strings.Replace(srv.URL, "http://", "http://mm:s3cret@", 1) + "/api/v1/send_push"
	rep, err := loadgen.Run(context.Background(), loadgen.Options{URL: url, Concurrency: 3, Requests: 300, Mix: loadgen.DefaultMix()})
	if err != nil || rep.OK != 300 {
		t.Fatalf("report %+v, %v", rep, err)
	}
	if b := bad.Load(); b != nil {
		t.Errorf("a request was not Mattermost's: %v", b)
	}
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	if n > 3 {
		t.Errorf("%d connections for 3 senders: keep-alive is not used", n)
	}
}

// TestRunEndsWithItsContext checks that ending the run's context cuts off
// requests the relay never answers, instead of waiting out their timeout.
func TestRunEndsWithItsContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := loadgen.Run(ctx, loadgen.Options{URL: srv.URL, Concurrency: 2, Requests: 10, Mix: loadgen.DefaultMix()})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the run took %v after its context ended", took)
	}
	if rep.OK+rep.TransportErrors+rep.HTTPErrors != 0 {
		t.Errorf("requests cut off by the context were counted: %+v", rep)
	}
}

func TestBadURLsAreRefusedWithoutTheirSecret(t *testing.T) {
	for _, url := range []string{"ftp://relay/api/v1/send_push", "http://mm:s3cret@/api/v1/send_push", "http://mm:s3cret@relay:port/x"} {
		_, err := loadgen.Run(context.Background(), loadgen.Options{URL: url, Concurrency: 1, Requests: 1, Mix: loadgen.DefaultMix()})
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v, want an error without the secret", url, err)
		}
	}
}

// TestServeLookalikes runs the look-alikes' side of the rig in this
// process: it announces where they listen, takes the rig's controls,
// refuses malformed ones, and ends when its input closes.
func TestServeLookalikes(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- loadgen.ServeLookalikes(t.Context(), t.TempDir(), inR, outW) }()
	var l struct{ Apple, Google, Control string }
	if err := json.NewDecoder(outR).Decode(&l); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(l.Apple, "https://127.0.0.1:") || !strings.HasPrefix(l.Google, "https://127.0.0.1:") {
		t.Errorf("announced %+v, want the look-alikes' loopback URLs", l)
	}
	call := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, l.Control+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{http.MethodGet, "/delivered", 200, "0"},
		{http.MethodPost, "/upstream?latency=20ms&faults=0.05", 200, ""},
		{http.MethodPost, "/upstream?latency=0s&faults=0", 200, ""},
		{http.MethodPost, "/upstream?latency=soon&faults=0", 400, ""},
		{http.MethodPost, "/reset", 200, ""},
		{http.MethodGet, "/upstream", 405, ""},
	} {
		status, body := call(tc.method, tc.path)
		if status != tc.status || (tc.body != "" && body != tc.body) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, status, body, tc.status, tc.body)
		}
	}
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeLookalikes() = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("still serving after its input closed")
	}
}
