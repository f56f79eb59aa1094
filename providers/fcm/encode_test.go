package fcm_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"firebase.google.com/go/v4/messaging"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// sdkRequest is the firebase SDK's send request (its fcmRequest, which it
// json.Marshals into the body).
type sdkRequest struct {
	ValidateOnly bool               `json:"validate_only,omitempty"`
	Message      *messaging.Message `json:"message,omitempty"`
}

// checkEncoding checks that the body Send posts for n with ttl is the JSON
// value the SDK writes for Build(n) with that TTL (the SDK is the oracle),
// and returns it.
func checkEncoding(t *testing.T, n *wire.Notification, ttl *time.Duration) []byte {
	t.Helper()
	m := fcm.Build(n)
	m.Android.TTL = ttl
	want, err := json.Marshal(sdkRequest{Message: m})
	if err != nil {
		t.Fatalf("the SDK's json.Marshal: %v", err)
	}
	got, err := fcm.EncodeTTL(n, ttl)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	sameJSON(t, got, want)
	return got
}

// sameJSON checks that got, ours, is valid JSON of the same value as want,
// the SDK's.
func sameJSON(t *testing.T, got, want []byte) {
	t.Helper()
	// v2 is strict: duplicate names or invalid UTF-8 fail here.
	var gotV, wantV any
	if err := jsonv2.Unmarshal(got, &gotV); err != nil {
		t.Fatalf("invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &wantV); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotV, wantV) {
		t.Errorf("encoded:\n got %s\nwant %s", got, want)
	}
}

// ttls are the TTLs the encoder is checked with: none (Encode), whole
// seconds, fractions, zero and the longest there is.
var ttls = []time.Duration{-1, time.Hour, 3599 * time.Second, 0, 90*time.Second + 5*time.Millisecond,
	time.Nanosecond, 28 * 24 * time.Hour, 1<<63 - 1}

// ttlOf returns d as encode's argument: nil for -1, no expiry.
func ttlOf(d time.Duration) *time.Duration {
	if d == -1 {
		return nil
	}
	return &d
}

// escapes is a content message whose strings need escaping or are not
// valid UTF-8.
func escapes() wire.Notification {
	n := base(wire.TypeMessage)
	n.DeviceID = "tok\"en\\"
	n.Message = "line\nbreak \"quoted\" back\\slash\ttab <b>&amp;</b> \u2028\u2029 \x01\x1f\x7f emoji 🎉 é"
	n.ChannelName = "bad \xff\xfe utf-8"
	n.SenderName, n.OverrideUsername, n.OverrideIconURL = "<script>", "\u2028", "https://x/?a=1&b=2"
	n.SubType, n.RootID, n.Badge = "\x00", "\xed\xa0\x80", 120
	return n
}

// TestEncode: for every notification of buildCases, one whose strings need
// escaping, and every TTL, the body Send posts decodes to exactly what the
// SDK's json.Marshal makes of Build(n).
func TestEncode(t *testing.T) {
	cases := append(slices.Clip(buildCases), struct {
		name string
		n    func() wire.Notification
		data map[string]string
	}{name: "escapes", n: escapes})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := normalized(t, tc.n())
			for _, d := range ttls {
				got := checkEncoding(t, n, ttlOf(d))
				hint := fcm.RequestSizeHint(n)
				if tc.name != "escapes" && len(got) > hint {
					t.Errorf("ttl %v: the request (%d bytes) outgrew the size hint (%d)", d, len(got), hint)
				}
			}
			enc, err := fcm.Encode(n)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if noTTL, _ := fcm.EncodeTTL(n, nil); !bytes.Equal(enc, noTTL) {
				t.Errorf("Encode = %s, encode without a TTL = %s", enc, noTTL)
			}
		})
	}
}

// TestEncodeRefuses: a message the SDK would refuse is an error naming the
// field, never a value.
func TestEncodeRefuses(t *testing.T) {
	minus := -time.Second
	for want, edit := range map[string]func(n *wire.Notification) *time.Duration{
		"no device token":                     func(n *wire.Notification) *time.Duration { n.DeviceID = ""; return nil },
		"message.android.ttl must not be neg": func(*wire.Notification) *time.Duration { return &minus },
	} {
		n := normalized(t, buildCases[0].n())
		ttl := edit(n)
		got, err := fcm.EncodeTTL(n, ttl)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: encode error = %v, want it to name %q", want, err, want)
		}
		if got != nil {
			t.Errorf("%s: encode wrote %q", want, got)
		}
		if err != nil && (strings.Contains(err.Error(), "device-token-1") || strings.Contains(err.Error(), "hello")) {
			t.Errorf("%s: error %q quotes the message", want, err)
		}
	}
}

// TestEncodeUTF8 checks the encoder against what the SDK writes for
// strings that are not valid UTF-8: both send U+FFFD.
func TestEncodeUTF8(t *testing.T) {
	n := base(wire.TypeMessage)
	n.Message = "a\xffb"
	got, err := fcm.Encode(normalized(t, n))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Message struct{ Data map[string]string }
	}
	if err := json.Unmarshal(got, &v); err != nil || v.Message.Data["message"] != "a\uFFFDb" {
		t.Errorf("Encode = %s (%v), want a U+FFFD", got, err)
	}
}

// FuzzEncode compares the encoder with the SDK's encoding of Build(n) for
// any strings in the notification's fields, of any type, id-loaded or not,
// with any badge and TTL.
func FuzzEncode(f *testing.F) {
	f.Add("device-token", "hello :tada:", "town-square", "alice", "post-1", "server-1", uint8(0), false, 3, int64(3600_000))
	f.Add("t\\", "\x00\xff<>&\u2028", "k\"\n", "\xed\xa0\x80", "\x7f", "é\U0001F389", uint8(0), false, -1, int64(1500))
	f.Add("t", "You've received a new message.", "", "", "p", "s", uint8(0), true, 1000, int64(0))
	f.Add("t", "Session expired", "c", "n", "", "s", uint8(1), false, -2147483648, int64(1<<62))
	f.Add("t", "", "", "", "", "s", uint8(2), false, 0, int64(1))
	f.Fuzz(func(t *testing.T, token, message, channelName, senderName, id, meta string, typ uint8, idLoaded bool, badge int, ttlNanos int64) {
		types := []string{wire.TypeMessage, wire.TypeSession, wire.TypeClear, wire.TypeUpdateBadge, wire.TypeTest, "", meta}
		n := wire.Notification{
			Platform: "android_rn-v2", DeviceID: token, Type: types[int(typ)%len(types)], IsIDLoaded: idLoaded,
			Message: message, ChannelName: channelName, SenderName: senderName, OverrideUsername: senderName,
			AckID: id, PostID: id, TeamID: id, SenderID: id, ChannelID: id, RootID: id, IsCRTEnabled: badge%2 == 0,
			ServerID: meta, SubType: meta, Version: meta, Category: meta, Signature: meta,
			OverrideIconURL: meta, FromWebhook: meta, Badge: badge,
		}
		if ttlNanos < 0 || n.Normalize() != nil {
			t.Skip()
		}
		ttl := time.Duration(ttlNanos)
		got := checkEncoding(t, &n, &ttl)
		for _, s := range []string{token, n.Message, n.ChannelName, senderName, id, meta} {
			if q, _ := jsontext.AppendQuote(nil, s); len(q) != len(s)+2 {
				return // escapes: the hint does not count them
			}
		}
		if hint := fcm.RequestSizeHint(&n); len(got) > hint {
			t.Errorf("the request (%d bytes) outgrew the size hint (%d)", len(got), hint)
		}
	})
}

// TestEncodeCollapseKey: a redelivery's android.collapse_key (the ack id,
// escaped where it must be) comes out as the SDK writes
// AndroidConfig.CollapseKey, next to the TTL.
func TestEncodeCollapseKey(t *testing.T) {
	for _, key := range []string{"ack-1", "ack\"with\\escapes\u2028", ""} {
		n := base(wire.TypeMessage)
		n.DeviceID, n.AckID = "device-1", key
		ttl := time.Hour
		m := fcm.Build(&n)
		m.Android.TTL, m.Android.CollapseKey = &ttl, key
		want, err := json.Marshal(sdkRequest{Message: m})
		if err != nil {
			t.Fatal(err)
		}
		got, err := fcm.EncodeCollapse(&n, &ttl, key)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, got, want)
		if key != "" && !bytes.Contains(got, []byte(`"collapse_key"`)) {
			t.Errorf("%q: no collapse_key in %s", key, got)
		}
	}
}
