package wire_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pushrelay/pushrelay/relay/wire"
)

func TestSplitPlatform(t *testing.T) {
	tests := []struct {
		in      string
		name    string
		version int
	}{
		{"apple_rn", "apple_rn", 1},
		{"apple_rn-v2", "apple_rn", 2},
		{"android_rn-v12", "android_rn", 12},
		{"apple_rnbeta", "apple_rnbeta", 1},
		{"apple-vx", "apple-vx", 1},
		{"apple_rn-v0", "apple_rn-v0", 1},
		{"my-vendor_app-v3", "my-vendor_app", 3},
	}
	for _, tt := range tests {
		name, v := wire.SplitPlatform(tt.in)
		if name != tt.name || v != tt.version {
			t.Errorf("SplitPlatform(%q) = %q, %d; want %q, %d", tt.in, name, v, tt.name, tt.version)
		}
	}
}

func TestNormalize(t *testing.T) {
	long := strings.Repeat("é", 1500) // 3000 bytes, 2 per rune
	n := wire.Notification{Platform: "apple_rn-v2", ServerID: "s", DeviceID: "d", Message: long, ChannelName: strings.Repeat("ü", 40)}
	if err := n.Normalize(); err != nil {
		t.Fatal(err)
	}
	if n.Platform != "apple_rn" || n.AppVersion != 2 || n.Signature != wire.NoSignature {
		t.Errorf("platform %q version %d signature %q", n.Platform, n.AppVersion, n.Signature)
	}
	if len(n.Message) != 2046 || !utf8.ValidString(n.Message) {
		t.Errorf("message cut to %d bytes (valid UTF-8: %v), want 2046", len(n.Message), utf8.ValidString(n.Message))
	}
	if len(n.ChannelName) != 64 || !utf8.ValidString(n.ChannelName) {
		t.Errorf("channel_name cut to %d bytes", len(n.ChannelName))
	}

	for _, tt := range []struct {
		n    wire.Notification
		want error
	}{
		{wire.Notification{Platform: "p", DeviceID: "d"}, wire.ErrNoServerID},
		{wire.Notification{Platform: "p", ServerID: "s"}, wire.ErrNoDeviceID},
		{wire.Notification{ServerID: "s", DeviceID: "d"}, wire.ErrNoPlatform},
	} {
		if err := tt.n.Normalize(); err != tt.want {
			t.Errorf("Normalize(%+v) = %v, want %v", tt.n, err, tt.want)
		}
	}
}

func FuzzTruncateUTF8(f *testing.F) {
	f.Add("héllo wörld", 3)
	f.Add("🎉🎉", 5)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 4096 {
			return
		}
		got := wire.TruncateUTF8(s, max)
		if len(got) > max && len(s) > max {
			t.Fatalf("TruncateUTF8 returned %d bytes, max %d", len(got), max)
		}
		if !strings.HasPrefix(s, got) {
			t.Fatalf("not a prefix")
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("cut inside a rune: %q", got)
		}
		if len(s) > max && max-len(got) >= utf8.UTFMax {
			t.Fatalf("cut %d bytes more than needed", max-len(got))
		}
	})
}

func TestTokenHashIsShortAndStable(t *testing.T) {
	h := wire.TokenHash("device-token")
	if len(h) != 12 || h != wire.TokenHash("device-token") || h == wire.TokenHash("other") || strings.Contains(h, "device") {
		t.Errorf("TokenHash = %q", h)
	}
}

func ExampleNotification_Normalize() {
	n := wire.Notification{Platform: "apple_rn-v2", ServerID: "srv", DeviceID: "tok"}
	err := n.Normalize()
	fmt.Println(n.Platform, n.AppVersion, n.Signature, err)
	// Output: apple_rn 2 NO_SIGNATURE <nil>
}

func ExampleNotification_UnmarshalJSON() {
	// What json.Unmarshal calls, and the relay's ingress directly.
	var n wire.Notification
	err := n.UnmarshalJSON([]byte(`{"platform":"android_rn","server_id":"srv","device_id":"tok","badge":"2"}`))
	fmt.Println(err)
	err = n.UnmarshalJSON([]byte(`{"platform":"android_rn","server_id":"srv","device_id":"tok","badge":2,"extra":[1]}`))
	fmt.Println(n.Platform, n.DeviceID, n.Badge, err)
	// Output:
	// json: cannot unmarshal string into Go struct field Notification.badge of type int
	// android_rn tok 2 <nil>
}
