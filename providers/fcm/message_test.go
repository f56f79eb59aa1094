package fcm_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"testing"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// normalized returns n after wire.(*Notification).Normalize, as the relay
// hands it to a provider.
func normalized(t testing.TB, n wire.Notification) *wire.Notification {
	t.Helper()
	if err := n.Normalize(); err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	return &n
}

// base is what every notification of these tests shares.
func base(typ string) wire.Notification {
	return wire.Notification{
		AckID:        "ack-1",
		Platform:     "android_rn-v2",
		ServerID:     "server-1",
		DeviceID:     "device-token-1",
		ChannelID:    "channel-1",
		Type:         typ,
		Version:      "v2",
		IsCRTEnabled: true,
		Signature:    "sig.jwt.value",
		Category:     wire.CategoryCanReply,
	}
}

// always is the data every message carries for base(typ).
func always(typ string) map[string]string {
	return map[string]string{
		"ack_id":         "ack-1",
		"type":           typ,
		"sub_type":       "",
		"version":        "v2",
		"channel_id":     "channel-1",
		"is_crt_enabled": "true",
		"server_id":      "server-1",
		"category":       wire.CategoryCanReply,
		"signature":      "sig.jwt.value",
	}
}

// with returns a copy of m with kv (key, value, key, value, ...) set.
func with(m map[string]string, kv ...string) map[string]string {
	out := maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// buildCases are notifications (already through the policy) and the data
// the apps must get for them. Shared by the Build and the end-to-end tests.
var buildCases = []struct {
	name string
	n    func() wire.Notification
	data map[string]string
}{
	{
		name: "message, full policy",
		n: func() wire.Notification {
			n := base(wire.TypeMessage)
			n.PostID, n.TeamID, n.SenderID, n.SenderName = "post-1", "team-1", "user-1", "alice"
			n.Message, n.ChannelName, n.Badge = "hello :tada:", "town-square", 3
			return n
		},
		data: with(always(wire.TypeMessage), "badge", "3", "post_id", "post-1", "team_id", "team-1",
			"sender_id", "user-1", "sender_name", "alice", "message", "hello \U0001F389 ", "channel_name", "town-square"), // shortcodes expanded (emoji.Sprint pads with a space)
	},
	{
		name: "message, stripped: removed fields are absent",
		n: func() wire.Notification {
			n := base(wire.TypeMessage)
			n.PostID, n.TeamID, n.SenderID, n.Message = "post-1", "team-1", "user-1", "New message"
			return n
		},
		data: with(always(wire.TypeMessage), "badge", "0", "post_id", "post-1", "team_id", "team-1",
			"sender_id", "user-1", "message", "New message"),
	},
	{
		name: "message from a webhook, thread reply",
		n: func() wire.Notification {
			n := base(wire.TypeMessage)
			n.PostID, n.RootID, n.SubType, n.Badge = "post-2", "root-1", "calls", 1
			n.OverrideUsername, n.OverrideIconURL, n.FromWebhook = "bot", "https://example.com/i.png", "true"
			return n
		},
		data: with(always(wire.TypeMessage), "sub_type", "calls", "badge", "1", "post_id", "post-2", "root_id", "root-1",
			"override_username", "bot", "override_icon_url", "https://example.com/i.png", "from_webhook", "true"),
	},
	{
		name: "session",
		n: func() wire.Notification {
			n := base(wire.TypeSession)
			n.Message, n.Badge = "Session expired", wire.BadgeUnchanged
			return n
		},
		data: with(always(wire.TypeSession), "message", "Session expired"),
	},
	{
		name: "id-loaded",
		n: func() wire.Notification {
			n := base(wire.TypeMessage)
			n.IsIDLoaded, n.PostID, n.TeamID, n.SenderID, n.RootID = true, "post-3", "team-1", "user-2", "root-2"
			n.Message, n.Badge = "You've received a new message.", 2
			n.ChannelName, n.SenderName = "secret-channel", "bob" // id-loaded never passes them on
			return n
		},
		data: with(always(wire.TypeMessage), "badge", "2", "root_id", "root-2", "post_id", "post-3",
			"message", "You've received a new message.", "id_loaded", "true", "sender_id", "user-2",
			"sender_name", "Someone", "team_id", "team-1"),
	},
	{
		name: "clear",
		n: func() wire.Notification {
			n := base(wire.TypeClear)
			n.Category = ""
			n.Message = "ignored" // clear carries no content
			return n
		},
		data: with(always(wire.TypeClear), "category", "", "badge", "0"),
	},
	{
		name: "update_badge",
		n: func() wire.Notification {
			n := base(wire.TypeUpdateBadge)
			n.Badge = 7
			return n
		},
		data: with(always(wire.TypeUpdateBadge), "badge", "7"),
	},
	{
		name: "badge -1 leaves the badge alone",
		n: func() wire.Notification {
			n := base(wire.TypeClear)
			n.Badge = wire.BadgeUnchanged
			return n
		},
		data: always(wire.TypeClear),
	},
	{
		name: "root_id on any type, empty signature sent as NO_SIGNATURE",
		n: func() wire.Notification {
			n := base(wire.TypeTest)
			n.RootID, n.Signature, n.IsCRTEnabled = "root-3", "", false
			return n
		},
		data: with(always(wire.TypeTest), "badge", "0", "root_id", "root-3", "signature", wire.NoSignature, "is_crt_enabled", "false"),
	},
}

func TestBuild(t *testing.T) {
	for _, tc := range buildCases {
		t.Run(tc.name, func(t *testing.T) {
			n := normalized(t, tc.n())
			m := fcm.Build(n)
			if m.Token != n.DeviceID {
				t.Errorf("Token = %q, want %q", m.Token, n.DeviceID)
			}
			if m.Notification != nil || m.APNS != nil || m.Webpush != nil || m.Topic != "" || m.Condition != "" {
				t.Errorf("message is not data-only to one token: %+v", m)
			}
			if m.Android == nil || !reflect.DeepEqual(*m.Android, messaging.AndroidConfig{Priority: "high"}) {
				t.Errorf("Android = %+v, want only priority high", m.Android)
			}
			if !reflect.DeepEqual(m.Data, tc.data) {
				t.Errorf("Data:\n got %v\nwant %v", m.Data, tc.data)
			}
		})
	}
}

func ExampleBuild() {
	n := wire.Notification{
		AckID: "ack-1", Platform: "android_rn", ServerID: "server-1", DeviceID: "device-token",
		PostID: "post-1", TeamID: "team-1", ChannelID: "channel-1", SenderID: "user-1",
		Type: wire.TypeMessage, Version: "v2", Category: wire.CategoryCanReply, Badge: 1,
		IsIDLoaded: true, Message: "You've received a new message.",
	}
	if err := n.Normalize(); err != nil {
		panic(err)
	}
	body, _ := json.MarshalIndent(fcm.Build(&n), "", "  ")
	fmt.Println(string(body))
	// Output:
	// {
	//   "data": {
	//     "ack_id": "ack-1",
	//     "badge": "1",
	//     "category": "CAN_REPLY",
	//     "channel_id": "channel-1",
	//     "id_loaded": "true",
	//     "is_crt_enabled": "false",
	//     "message": "You've received a new message.",
	//     "post_id": "post-1",
	//     "sender_id": "user-1",
	//     "sender_name": "Someone",
	//     "server_id": "server-1",
	//     "signature": "NO_SIGNATURE",
	//     "sub_type": "",
	//     "team_id": "team-1",
	//     "type": "message",
	//     "version": "v2"
	//   },
	//   "android": {
	//     "priority": "high"
	//   },
	//   "token": "device-token"
	// }
}

// BenchmarkBuild measures what Send does before the network: the encoding
// of the request body (Encode; Send does not build a messaging.Message).
func BenchmarkBuild(b *testing.B) {
	for _, tc := range buildCases[:1] {
		n := normalized(b, tc.n())
		b.ReportAllocs()
		for b.Loop() {
			if _, err := fcm.Encode(n); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkBuildSDK is BenchmarkBuild with the firebase SDK's encoding
// (json.Marshal of its send request), for comparison.
func BenchmarkBuildSDK(b *testing.B) {
	for _, tc := range buildCases[:1] {
		n := normalized(b, tc.n())
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(sdkRequest{Message: fcm.Build(n)}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func ExampleEncode() {
	n := wire.Notification{Platform: "android_rn", ServerID: "server-1", DeviceID: "device-token",
		Type: wire.TypeClear, ChannelID: "channel-1", Badge: 0}
	if err := n.Normalize(); err != nil {
		panic(err)
	}
	body, err := fcm.Encode(&n) // the body of POST /v1/projects/<id>/messages:send
	if err != nil {
		panic(err)
	}
	var v any // the data keys are not sorted: sort them for the example
	json.Unmarshal(body, &v)
	sorted, _ := json.Marshal(v)
	fmt.Println(string(sorted))
	// Output:
	// {"message":{"android":{"priority":"high"},"data":{"ack_id":"","badge":"0","category":"","channel_id":"channel-1","is_crt_enabled":"false","server_id":"server-1","signature":"NO_SIGNATURE","sub_type":"","type":"clear","version":""},"token":"device-token"}}
}
