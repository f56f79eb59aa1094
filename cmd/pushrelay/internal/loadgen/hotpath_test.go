package loadgen_test

import (
	"testing"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/loadgen"
	"github.com/pushrelay/pushrelay/policy"
	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// BenchmarkHotPath is the relay's own work per notification, without the
// network: decode the body, validate, apply the default policy, build and
// encode the APNs or FCM payload. The mix is loadgen's default.
func BenchmarkHotPath(b *testing.B) {
	bodies := loadgen.Bodies(1024, loadgen.DefaultMix(), "apple_rn", "android_rn")
	pol := policy.Default()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var n wire.Notification
		if err := n.UnmarshalJSON(bodies[i%len(bodies)]); err != nil { // as the server decodes
			b.Fatal(err)
		}
		if err := n.Normalize(); err != nil {
			b.Fatal(err)
		}
		out, _ := pol.Apply(n)
		if out.Platform == "apple_rn" {
			// The payload comes out encoded: what Send posts.
			_ = apns.Build(&out, "com.mattermost.rn")
		} else if _, err := fcm.Encode(&out); err != nil {
			b.Fatal(err)
		}
	}
}
