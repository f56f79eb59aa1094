//go:build unix

package sandbox_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

// The load command's pushes: a message notification as the relay sends it
// to each provider.
const (
	benchAPNsBody = `{"aps":{"alert":{"body":"You've received a new message."},"badge":3,"sound":"default",` +
		`"mutable-content":1,"category":"CAN_REPLY"},"ack_id":"5f2c8e1a9b7d4c3e8f6a0b1c2d3e4f5a",` +
		`"server_id":"k3j8d9s7f6g5h4j3k2l1m0n9b8","type":"message","version":"v2",` +
		`"post_id":"p9o8i7u6y5t4r3e2w1q0a9s8d7","channel_id":"c1v2b3n4m5l6k7j8h9g0f1d2s3",` +
		`"team_id":"t5r4e3w2q1a0s9d8f7g6h5j4k3","is_id_loaded":true}`
	benchFCMBody = `{"message":{"token":"` + benchFCMToken + `","data":{` +
		`"ack_id":"5f2c8e1a9b7d4c3e8f6a0b1c2d3e4f5a","type":"message","version":"v2",` +
		`"post_id":"p9o8i7u6y5t4r3e2w1q0a9s8d7","channel_id":"c1v2b3n4m5l6k7j8h9g0f1d2s3",` +
		`"team_id":"t5r4e3w2q1a0s9d8f7g6h5j4k3","badge":"3","is_id_loaded":"true",` +
		`"server_id":"k3j8d9s7f6g5h4j3k2l1m0n9b8","sender_id":"u1i2o3p4a5s6d7f8g9h0j1k2l3"},` +
		`"android":{"priority":"high","ttl":"3600s"}}}`
	benchFCMToken = "fGx7Qm3kT0aP2vL9wXcR8s:APA91bH4nJ6tY1uI3oP5aS7dF9gH2jK4lZ6xC8vB0nM2qW4eR6tY8uI0oP3aS5dF7gH9jK1lZ3xC5vB7nM9qW1eR3tY5uI7oP9aS1dF3gH5jK7lZ9xC1vB3nM5qW7eR9tY1uI3o"
)

// benchJWT has the shape of a provider token; the look-alike checks it only
// once TrustKey was called, as the load command's does not.
var benchJWT = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"KEY1234567"}`)) + "." +
	base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"TEAM123456","iat":1700000000}`)) + "." +
	base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("s", 64)))

// BenchmarkAPNsSend pushes the load command's notification concurrently,
// over HTTP/2 and TLS, to an APNs look-alike that does not record, in a
// process of its own as the load command runs it. Besides the time per
// push, it reports the look-alike's CPU time and allocations per push
// (lookalike-*; the standard B/op and allocs/op are the client's). With
// SANDBOX_BENCH_CPUPROFILE=file in its environment, the look-alike's
// process writes its CPU profile there.
func BenchmarkAPNsSend(b *testing.B) {
	l := startBenchLookalike(b, "apns")
	hdr := http.Header{
		"apns-topic":      {"com.mattermost.rn"},
		"apns-push-type":  {"alert"},
		"apns-priority":   {"10"},
		"apns-expiration": {strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)},
		"authorization":   {"bearer " + benchJWT},
	}
	url := l.URL + "/3/device/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	benchSend(b, l, url, hdr, benchAPNsBody, func(resp *http.Response) bool {
		return resp.StatusCode == http.StatusOK && resp.Header.Get("apns-id") != ""
	})
}

// BenchmarkFCMSend is BenchmarkAPNsSend for the FCM look-alike, with an
// access token from its token endpoint.
func BenchmarkFCMSend(b *testing.B) {
	l := startBenchLookalike(b, "fcm")
	hdr := http.Header{
		"Authorization": {"Bearer " + l.Token},
		"Content-Type":  {"application/json"},
	}
	benchSend(b, l, l.URL+"/v1/projects/pushrelay-sandbox/messages:send", hdr, benchFCMBody, func(resp *http.Response) bool {
		return resp.StatusCode == http.StatusOK
	})
}

// benchLookalikeEnv makes the test binary serve a look-alike for the
// benchmarks (see serveBenchLookalike) instead of running tests.
const benchLookalikeEnv = "SANDBOX_BENCH_LOOKALIKE"

// benchCPUProfileEnv names a file for the CPU profile of the benchmarks'
// look-alike process.
const benchCPUProfileEnv = "SANDBOX_BENCH_CPUPROFILE"

func TestMain(m *testing.M) {
	if kind := os.Getenv(benchLookalikeEnv); kind != "" {
		serveBenchLookalike(kind)
		return
	}
	os.Exit(m.Run())
}

// benchLookalike is a look-alike in a child process.
type benchLookalike struct {
	URL     string
	CertPEM []byte
	Token   string // an FCM access token

	client *http.Client
	in     io.Writer      // asks for figures
	out    *bufio.Scanner // answers them
}

// lookalikeFigures is what the look-alike's process used so far.
type lookalikeFigures struct {
	CPU            time.Duration
	Mallocs, Bytes uint64
}

// startBenchLookalike runs a look-alike of kind ("apns" or "fcm") in a
// child process, stopped when b ends.
func startBenchLookalike(b *testing.B, kind string) *benchLookalike {
	cmd := exec.Command(os.Args[0])
	// GOGC as the load command sets it for its look-alikes.
	cmd.Env = append(os.Environ(), benchLookalikeEnv+"="+kind, "GOGC=800")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	l := &benchLookalike{in: in, out: bufio.NewScanner(out)}
	if !l.out.Scan() {
		b.Fatal("the look-alike's process announced nothing")
	}
	if err := json.Unmarshal(l.out.Bytes(), l); err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(l.CertPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	b.Cleanup(tr.CloseIdleConnections)
	l.client = &http.Client{Transport: tr}
	return l
}

// figures returns what the look-alike's process used so far.
func (l *benchLookalike) figures(b *testing.B) lookalikeFigures {
	var f lookalikeFigures
	fmt.Fprintln(l.in)
	if !l.out.Scan() {
		b.Fatal("the look-alike's process is gone")
	}
	if err := json.Unmarshal(l.out.Bytes(), &f); err != nil {
		b.Fatal(err)
	}
	return f
}

// serveBenchLookalike serves a look-alike of kind, announces it as a line
// of JSON (a benchLookalike), then answers every line it reads with a line
// of JSON lookalikeFigures, until its standard input closes.
func serveBenchLookalike(kind string) {
	var l benchLookalike
	switch kind {
	case "apns":
		s := sandbox.NewAPNs()
		defer s.Close()
		s.SetRecording(false)
		l.URL, l.CertPEM = s.URL(), s.CertPEM()
	case "fcm":
		s := sandbox.NewFCM()
		defer s.Close()
		s.SetRecording(false)
		l.URL, l.CertPEM = s.URL(), s.CertPEM()
		// Before TrustKey, the token endpoint takes any well-formed
		// assertion.
		claims := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"x","scope":"` + fcmScope + `"}`))
		resp, err := s.Client().Post(s.TokenURL(), "application/x-www-form-urlencoded",
			strings.NewReader("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=e30."+claims+".c2ln"))
		if err != nil {
			panic(err)
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&tok)
		resp.Body.Close()
		l.Token = tok.AccessToken
	default:
		panic("no look-alike " + kind)
	}
	if path := os.Getenv(benchCPUProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			panic(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	enc := json.NewEncoder(os.Stdout)
	enc.Encode(l)
	for sc := bufio.NewScanner(os.Stdin); sc.Scan(); {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		enc.Encode(lookalikeFigures{CPU: processCPU(), Mallocs: ms.Mallocs, Bytes: ms.TotalAlloc})
	}
}

// benchSend posts body with hdr to url from parallel goroutines until b.N
// requests were answered, failing on any answer ok refuses, and reports
// what the look-alike l used per request.
func benchSend(b *testing.B, l *benchLookalike, url string, hdr http.Header, body string, ok func(*http.Response) bool) {
	b.SetParallelism(8) // requests in flight per GOMAXPROCS, like the relay's senders
	// A first request opens the connection, outside the figures.
	send := func() error {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header = hdr
		resp, err := l.client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || !ok(resp) {
			return fmt.Errorf("answer %s %s", resp.Proto, resp.Status)
		}
		return nil
	}
	if err := send(); err != nil {
		b.Fatal(err)
	}
	before := l.figures(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := send(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	after := l.figures(b)
	n := float64(b.N)
	b.ReportMetric(float64(after.CPU-before.CPU)/n, "lookalike-cpu-ns/op")
	b.ReportMetric(float64(after.Bytes-before.Bytes)/n, "lookalike-B/op")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "lookalike-allocs/op")
}

// processCPU returns the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
