package apns

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/sideshow/apns2"

	"github.com/pushrelay/pushrelay/relay/wire"
)

const testTopic = "com.mattermost.rn"

// payloadCase is one notification and exactly what APNs must receive for it.
// The same table drives the pure Build test and the test over real HTTP/2.
type payloadCase struct {
	name     string
	n        wire.Notification // before Normalize; DeviceID is set per test
	topic    string            // apns-topic
	pushType string            // apns-push-type
	want     map[string]any    // the decoded JSON payload, with DeviceID-free values
}

// fullMessage is a `message` push as Mattermost sends it under policy full.
func fullMessage() wire.Notification {
	return wire.Notification{
		AckID:       "ack-1",
		Platform:    "apple_rn",
		ServerID:    "server-1",
		PostID:      "post-1",
		Category:    wire.CategoryCanReply,
		Message:     "alice: we shipped :tada:",
		Badge:       3,
		TeamID:      "team-1",
		ChannelID:   "channel-1",
		ChannelName: "Town Square",
		Type:        wire.TypeMessage,
		SenderID:    "user-1",
		SenderName:  "alice",
		Version:     "v2",
		Signature:   "sig.jwt.value",
	}
}

// commonKeys are the custom keys of fullMessage (and its variants).
func commonKeys(typ string, extra map[string]any) map[string]any {
	m := map[string]any{
		"type":           typ,
		"sub_type":       "",
		"server_id":      "server-1",
		"is_crt_enabled": false,
		"signature":      "sig.jwt.value",
		"ack_id":         "ack-1",
		"channel_id":     "channel-1",
		"team_id":        "team-1",
		"sender_id":      "user-1",
		"sender_name":    "alice",
		"post_id":        "post-1",
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	return m
}

func with(n wire.Notification, edit func(*wire.Notification)) wire.Notification {
	edit(&n)
	return n
}

const tada = "alice: we shipped \U0001F389 " // emoji.Sprint pads an emoji with a space

func payloadCases() []payloadCase {
	return []payloadCase{
		{
			name: "message v2 with channel name",
			n:    fullMessage(),
			want: commonKeys("message", map[string]any{
				"aps": map[string]any{
					"alert":             map[string]any{"title": "Town Square", "body": tada},
					"badge":             3.0,
					"category":          "CAN_REPLY",
					"sound":             "default",
					"mutable-content":   1.0,
					"content-available": 1.0,
					"thread-id":         "channel-1",
				},
				"version":      "v2",
				"channel_name": "Town Square",
			}),
		},
		{
			name: "message v2 without channel name",
			n:    with(fullMessage(), func(n *wire.Notification) { n.ChannelName = "" }),
			want: commonKeys("message", map[string]any{
				"aps": map[string]any{
					"alert": tada, "badge": 3.0, "category": "CAN_REPLY", "sound": "default",
					"mutable-content": 1.0, "content-available": 1.0, "thread-id": "channel-1",
				},
				"version": "v2",
			}),
		},
		{
			name: "message v1",
			n:    with(fullMessage(), func(n *wire.Notification) { n.Version = "" }),
			want: commonKeys("message", map[string]any{
				"aps": map[string]any{
					"alert": tada, "badge": 3.0, "category": "CAN_REPLY", "sound": "default",
					"mutable-content": 1.0, "content-available": 1.0, "thread-id": "channel-1",
				},
				"version":      "",
				"channel_name": "Town Square",
			}),
		},
		{
			name: "message from a webhook, badge unchanged, no colon",
			n: with(fullMessage(), func(n *wire.Notification) {
				n.Badge = wire.BadgeUnchanged
				n.Message = "build 42 passed"
				n.OverrideUsername = "ci-bot"
				n.OverrideIconURL = "https://ci.example/icon.png"
				n.FromWebhook = "true"
				n.SubType = "calls"
			}),
			want: commonKeys("message", map[string]any{
				"aps": map[string]any{
					"alert":    map[string]any{"title": "Town Square", "body": "build 42 passed"},
					"category": "CAN_REPLY", "sound": "default",
					"mutable-content": 1.0, "content-available": 1.0, "thread-id": "channel-1",
				},
				"version":           "v2",
				"channel_name":      "Town Square",
				"sub_type":          "calls",
				"override_username": "ci-bot",
				"override_icon_url": "https://ci.example/icon.png",
				"from_webhook":      "true",
			}),
		},
		{
			name: "thread reply with collapsed threads",
			n: with(fullMessage(), func(n *wire.Notification) {
				n.IsCRTEnabled = true
				n.RootID = "root-1"
			}),
			want: commonKeys("message", map[string]any{
				"aps": map[string]any{
					"alert": map[string]any{"title": "Town Square", "body": tada}, "badge": 3.0,
					"category": "CAN_REPLY", "sound": "default",
					"mutable-content": 1.0, "content-available": 1.0, "thread-id": "root-1",
				},
				"version":        "v2",
				"channel_name":   "Town Square",
				"is_crt_enabled": true,
				"root_id":        "root-1",
			}),
		},
		{
			name: "thread reply without collapsed threads",
			n:    with(fullMessage(), func(n *wire.Notification) { n.RootID = "root-1" }),
			want: commonKeys("message", map[string]any{
				"aps": map[string]any{
					"alert": map[string]any{"title": "Town Square", "body": tada}, "badge": 3.0,
					"category": "CAN_REPLY", "sound": "default",
					"mutable-content": 1.0, "content-available": 1.0, "thread-id": "channel-1",
				},
				"version":      "v2",
				"channel_name": "Town Square",
				"root_id":      "root-1",
			}),
		},
		{
			name: "session",
			n: with(fullMessage(), func(n *wire.Notification) {
				n.Type = wire.TypeSession
				n.Message = "Session expired: please log in"
				n.ChannelName = ""
				n.ChannelID = ""
			}),
			want: commonKeys("session", map[string]any{
				"aps": map[string]any{
					"alert": "Session expired: please log in", "badge": 3.0,
					"category": "CAN_REPLY", "sound": "default", "mutable-content": 1.0,
				},
				"version":    "v2",
				"channel_id": nil,
			}),
		},
		{
			name: "id-loaded",
			n: with(fullMessage(), func(n *wire.Notification) {
				// What policy id_only leaves.
				n.IsIDLoaded = true
				n.Message = "You've received a new message."
				n.ChannelName = ""
				n.SenderName = ""
			}),
			want: commonKeys("message", map[string]any{
				"aps": map[string]any{
					"alert": "You've received a new message.", "badge": 3.0,
					"category": "CAN_REPLY", "sound": "default",
					"mutable-content": 1.0, "content-available": 1.0, "thread-id": "channel-1",
				},
				"version":     "v2",
				"id_loaded":   true,
				"sender_name": nil,
			}),
		},
		{
			name: "clear, app version 1",
			n: wire.Notification{
				Platform: "apple_rn", ServerID: "server-1", Type: wire.TypeClear, Badge: 0,
				ChannelID: "channel-1", AckID: "ack-1",
			},
			want: map[string]any{
				"aps":  map[string]any{"badge": 0.0, "content-available": 1.0, "thread-id": "channel-1"},
				"type": "clear", "sub_type": "", "server_id": "server-1", "is_crt_enabled": false,
				"signature": wire.NoSignature, "ack_id": "ack-1", "channel_id": "channel-1",
			},
		},
		{
			name: "clear, app version 2",
			n: wire.Notification{
				Platform: "apple_rn-v2", ServerID: "server-1", Type: wire.TypeClear, Badge: 0,
				ChannelID: "channel-1", AckID: "ack-1",
			},
			want: map[string]any{
				"aps":  map[string]any{"badge": 1.0, "content-available": 1.0, "thread-id": "channel-1"},
				"type": "clear", "sub_type": "", "server_id": "server-1", "is_crt_enabled": false,
				"signature": wire.NoSignature, "ack_id": "ack-1", "channel_id": "channel-1",
			},
		},
		{
			name: "clear, app version 2, badge left",
			n: wire.Notification{
				Platform: "apple_rn-v2", ServerID: "server-1", Type: wire.TypeClear, Badge: 4,
				ChannelID: "channel-1",
			},
			want: map[string]any{
				"aps":  map[string]any{"badge": 4.0, "content-available": 1.0, "thread-id": "channel-1"},
				"type": "clear", "sub_type": "", "server_id": "server-1", "is_crt_enabled": false,
				"signature": wire.NoSignature, "channel_id": "channel-1",
			},
		},
		{
			name: "update_badge",
			n: wire.Notification{
				Platform: "apple_rn", ServerID: "server-1", Type: wire.TypeUpdateBadge, Badge: 7,
				Signature: "sig.jwt.value",
			},
			want: map[string]any{
				"aps":  map[string]any{"badge": 7.0},
				"type": "update_badge", "sub_type": "", "server_id": "server-1", "is_crt_enabled": false,
				"signature": "sig.jwt.value",
			},
		},
		{
			name: "test",
			n: wire.Notification{
				Platform: "apple_rn", ServerID: "server-1", Type: wire.TypeTest, Badge: wire.BadgeUnchanged,
				Message: "test :tada:",
			},
			want: map[string]any{
				"aps":  map[string]any{"content-available": 1.0},
				"type": "test", "sub_type": "", "server_id": "server-1", "is_crt_enabled": false,
				"signature": wire.NoSignature,
			},
		},
		{
			name:     "voip",
			n:        with(fullMessage(), func(n *wire.Notification) { n.Transport = wire.TransportVoIP; n.SubType = "calls" }),
			topic:    testTopic + ".voip",
			pushType: "voip",
			want: commonKeys("message", map[string]any{
				"aps":      map[string]any{},
				"sub_type": "calls",
			}),
		},
	}
}

// normalized returns c's notification for token, as the relay hands it over.
func (c payloadCase) normalized(t testing.TB, token string) *wire.Notification {
	t.Helper()
	n := c.n
	n.DeviceID = token
	if err := n.Normalize(); err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	return &n
}

func (c payloadCase) wantTopic() string {
	if c.topic != "" {
		return c.topic
	}
	return testTopic
}

func (c payloadCase) wantPushType() string {
	if c.pushType != "" {
		return c.pushType
	}
	return "alert"
}

// decode unmarshals a JSON payload into a generic map.
func decode(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("payload is not a JSON object: %v\n%s", err, body)
	}
	return m
}

func comparePayload(t *testing.T, body []byte, want map[string]any) {
	t.Helper()
	got := decode(t, body)
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", "  ")
		wj, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("payload mismatch\n got: %s\nwant: %s", gj, wj)
	}
}

func TestBuild(t *testing.T) {
	for i, c := range payloadCases() {
		t.Run(c.name, func(t *testing.T) {
			token := fmt.Sprintf("%064x", i+1)
			an := Build(c.normalized(t, token), testTopic)
			if an.DeviceToken != token {
				t.Errorf("DeviceToken = %q, want %q", an.DeviceToken, token)
			}
			if an.Topic != c.wantTopic() {
				t.Errorf("Topic = %q, want %q", an.Topic, c.wantTopic())
			}
			if string(an.PushType) != c.wantPushType() {
				t.Errorf("PushType = %q, want %q", an.PushType, c.wantPushType())
			}
			if an.Priority != apns2.PriorityHigh {
				t.Errorf("Priority = %d, want 10", an.Priority)
			}
			body, err := json.Marshal(an)
			if err != nil {
				t.Fatal(err)
			}
			comparePayload(t, body, c.want)
		})
	}
}

// TestBuildPure checks that Build neither changes its input nor leaks the
// device token into the payload.
func TestBuildPure(t *testing.T) {
	for _, c := range payloadCases() {
		n := c.normalized(t, "feedface")
		before := *n
		body, err := json.Marshal(Build(n, testTopic))
		if err != nil {
			t.Fatal(err)
		}
		if *n != before {
			t.Errorf("%s: Build modified its input", c.name)
		}
		if strings.Contains(string(body), "feedface") {
			t.Errorf("%s: the device token is in the payload: %s", c.name, body)
		}
	}
}

// payloadBytes are payloads pinned byte for byte (TestBuildBytes), as the
// map-based payload and then the first jsonobject encoder wrote them: keys
// sorted, no spaces, emoji and non-ASCII text as they are, '<', '>', '&',
// DEL and U+2028 not escaped, invalid UTF-8 as U+FFFD.
var payloadBytes = []struct {
	name string
	n    wire.Notification // before Normalize
	want string
}{
	{"message v2 with channel name", fullMessage(), `{"ack_id":"ack-1","aps":{"alert":{"body":"alice: we shipped 🎉 ","title":"Town Square"},"badge":3,"category":"CAN_REPLY","content-available":1,"mutable-content":1,"sound":"default","thread-id":"channel-1"},"channel_id":"channel-1","channel_name":"Town Square","is_crt_enabled":false,"post_id":"post-1","sender_id":"user-1","sender_name":"alice","server_id":"server-1","signature":"sig.jwt.value","sub_type":"","team_id":"team-1","type":"message","version":"v2"}`},
	{"id-loaded", with(fullMessage(), func(n *wire.Notification) {
		n.IsIDLoaded, n.Message, n.ChannelName, n.SenderName = true, "You've received a new message.", "", ""
	}), `{"ack_id":"ack-1","aps":{"alert":"You've received a new message.","badge":3,"category":"CAN_REPLY","content-available":1,"mutable-content":1,"sound":"default","thread-id":"channel-1"},"channel_id":"channel-1","id_loaded":true,"is_crt_enabled":false,"post_id":"post-1","sender_id":"user-1","server_id":"server-1","signature":"sig.jwt.value","sub_type":"","team_id":"team-1","type":"message","version":"v2"}`},
	{"escapes", with(fullMessage(), func(n *wire.Notification) {
		n.Message = "say \"hi\"\n<b>&</b> \u2028 :tada::flag-fr: \xff\x7f :nope: end"
		n.ChannelName = "Caf\u00e9 \\ \x01"
	}), "{\"ack_id\":\"ack-1\",\"aps\":{\"alert\":{\"body\":\"say \\\"hi\\\"\\n<b>&</b> \u2028 🎉 🇫🇷 \ufffd\x7f :nope: end\",\"title\":\"Café \\\\ \\u0001\"},\"badge\":3,\"category\":\"CAN_REPLY\",\"content-available\":1,\"mutable-content\":1,\"sound\":\"default\",\"thread-id\":\"channel-1\"},\"channel_id\":\"channel-1\",\"channel_name\":\"Café \\\\ \\u0001\",\"is_crt_enabled\":false,\"post_id\":\"post-1\",\"sender_id\":\"user-1\",\"sender_name\":\"alice\",\"server_id\":\"server-1\",\"signature\":\"sig.jwt.value\",\"sub_type\":\"\",\"team_id\":\"team-1\",\"type\":\"message\",\"version\":\"v2\"}"},
}

func TestBuildBytes(t *testing.T) {
	for _, c := range payloadBytes {
		n := payloadCase{n: c.n}.normalized(t, "token")
		if got := Build(n, testTopic).Payload.(json.RawMessage); string(got) != c.want {
			t.Errorf("%s: payload\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

// TestPayloadSizeHint: the payload of every case, and of a notification
// with every field set and shortcodes that expand to more than twice their
// length, fits the size its buffer is grown to first: it never grows twice.
func TestPayloadSizeHint(t *testing.T) {
	cases := payloadCases()
	for _, version := range []string{"v2", ""} {
		cases = append(cases, payloadCase{name: "every field, version " + version, n: wire.Notification{
			AckID: "ack", Platform: "apple_rn-v2", ServerID: "server", PostID: "post", Category: "CAN_REPLY",
			Message: ":wales::flag-fr: :+1:", Badge: -1 << 63, TeamID: "team", ChannelID: "channel",
			RootID: "root", ChannelName: "name", Type: wire.TypeMessage, SubType: "calls", SenderID: "sender",
			SenderName: "alice", OverrideUsername: "bot", OverrideIconURL: "https://x/i.png", FromWebhook: "true",
			Version: version, IsCRTEnabled: true, Signature: "sig",
		}})
	}
	for _, c := range cases {
		n := c.normalized(t, "token")
		hint := payloadSizeHint(n, expandEmoji(n.Message))
		payload := Build(n, testTopic).Payload.(json.RawMessage)
		if len(payload) > hint {
			t.Errorf("%s: the payload (%d bytes) outgrew its size hint (%d)", c.name, len(payload), hint)
		}
	}
}

func TestExpandEmoji(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"no colon here", "no colon here"},
		{":+1:", "\U0001F44D "},
		{"at 10:30, :nope: stays", "at 10:30, :nope: stays"},
		{"::tada:", ":\U0001F389 "},
		{":tada::tada:", "\U0001F389 \U0001F389 "},
		{":nope:tada:", ":nope:tada:"}, // the closing colon starts no shortcode
		{":ta da: :tada", ":ta da: :tada"},
		{":flag-fr: :flag-FR: :flag-fra:", "\U0001F1EB\U0001F1F7 :flag-FR: :flag-fra:"},
		{"\u00a0:tada:\u00a0", "\u00a0\U0001F389 \u00a0"},
	} {
		if got := expandEmoji(c.in); got != c.want {
			t.Errorf("expandEmoji(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	n := fullMessage()
	n.DeviceID = strings.Repeat("ab", 32)
	if err := n.Normalize(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		Build(&n, testTopic)
	}
}

// BenchmarkBuildIDLoaded is BenchmarkBuild for what the default policy
// (id_only) leaves of a message: no emoji to expand.
func BenchmarkBuildIDLoaded(b *testing.B) {
	n := fullMessage()
	n.DeviceID = strings.Repeat("ab", 32)
	n.IsIDLoaded, n.Message, n.ChannelName, n.SenderName = true, "You've received a new message.", "", ""
	if err := n.Normalize(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		Build(&n, testTopic)
	}
}
