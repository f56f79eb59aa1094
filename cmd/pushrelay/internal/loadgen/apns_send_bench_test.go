package loadgen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/loadgen"
	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// BenchmarkSendAPNs posts a Mattermost message push to the APNs look-alike over
// HTTP/2 and TLS on loopback from about 32 goroutines: "provider" through
// Provider.Send, "direct" as the same request from a bare HTTP/2 client.
// The ratio of their ns/op is the relay-side cost of a send; both count
// the look-alike's own allocations too.
func BenchmarkSendAPNs(b *testing.B) {
	s := sandbox.NewAPNs()
	b.Cleanup(s.Close)
	creds, err := sandbox.WriteCredentials(b.TempDir(), s, nil)
	if err != nil {
		b.Fatal(err)
	}
	eg, err := egress.New(egress.Config{CAFile: creds.CAFile}, []string{"127.0.0.1"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	p, err := apns.New(apns.Config{Topic: sandbox.DefaultTopic, AuthKeyFile: creds.APNsKeyFile, KeyID: creds.KeyID,
		TeamID: creds.TeamID, Endpoint: s.URL()}, eg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	var n wire.Notification
	body := loadgen.Bodies(1, loadgen.Mix{APNsShare: 1, Message: 1}, "apple_rn", "android_rn")[0]
	if err := json.Unmarshal(body, &n); err != nil {
		b.Fatal(err)
	}
	if err := n.Normalize(); err != nil {
		b.Fatal(err)
	}
	// One send, recorded, connects, signs the provider token and gives
	// the direct client the request to repeat.
	if res := p.Send(context.Background(), &n); res.Outcome != providers.Delivered {
		b.Fatalf("Send() = %+v, want Delivered", res)
	}
	sent := s.Requests()[0]
	s.SetRecording(false)
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))

	b.Run("provider", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			n := n
			for pb.Next() {
				if res := p.Send(context.Background(), &n); res.Outcome != providers.Delivered {
					b.Errorf("Send() = %+v, want Delivered", res)
					return
				}
			}
		})
	})
	b.Run("direct", func(b *testing.B) {
		c := s.Client()
		url := s.URL() + "/3/device/" + sent.Token
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(sent.Body))
				if err != nil {
					b.Error(err)
					return
				}
				for _, k := range []string{"apns-topic", "apns-push-type", "apns-priority", "apns-expiration", "apns-collapse-id", "authorization"} {
					if v := sent.Header.Get(k); v != "" {
						req.Header.Set(k, v)
					}
				}
				resp, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("the look-alike answered %s", resp.Status)
					return
				}
			}
		})
	})
}
