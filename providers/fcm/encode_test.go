package fcm_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"firebase.google.com/go/v4/messaging"
	jsonv2 "github.com/go-json-experiment/json"

	"github.com/pushrelay/pushrelay/providers/fcm"
)

// sdkRequest is the firebase SDK's send request (its fcmRequest, which it
// json.Marshals into the body).
type sdkRequest struct {
	ValidateOnly bool               `json:"validate_only,omitempty"`
	Message      *messaging.Message `json:"message,omitempty"`
}

// checkEncoding checks that AppendRequest writes, for m, the JSON value the
// SDK writes, and returns it.
func checkEncoding(t *testing.T, m *messaging.Message) []byte {
	t.Helper()
	want, err := json.Marshal(sdkRequest{Message: m})
	if err != nil {
		t.Fatalf("the SDK's json.Marshal: %v", err)
	}
	got, err := fcm.AppendRequest(nil, m)
	if err != nil {
		t.Fatalf("AppendRequest: %v", err)
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

// TestAppendRequest: for every notification of buildCases, and messages
// with a TTL or strings to escape, the encoder's body decodes to exactly
// what the SDK's json.Marshal makes (the SDK is the oracle).
func TestAppendRequest(t *testing.T) {
	for _, tc := range buildCases {
		t.Run(tc.name, func(t *testing.T) {
			n := normalized(t, tc.n())
			got, err := fcm.Encode(n)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			want, err := json.Marshal(sdkRequest{Message: fcm.Build(n)})
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, got, want)

			m := fcm.Build(n)
			d := time.Duration(1<<63 - 1) // the longest TTL there is
			m.Android.TTL = &d
			got = checkEncoding(t, m)
			if hint := fcm.RequestSizeHint(n); len(got) > hint {
				t.Errorf("the request (%d bytes) outgrew the size hint (%d)", len(got), hint)
			}
		})
	}
	ttl := func(d time.Duration) *messaging.Message {
		m := fcm.Build(normalized(t, buildCases[0].n()))
		m.Android.TTL = &d
		return m
	}
	for name, m := range map[string]*messaging.Message{
		"ttl 1h":               ttl(time.Hour),
		"ttl 3599s":            ttl(3599 * time.Second),
		"ttl 0":                ttl(0),
		"ttl with nanoseconds": ttl(90*time.Second + 5*time.Millisecond),
		"ttl of 1ns":           ttl(time.Nanosecond),
		"ttl of 28 days":       ttl(28 * 24 * time.Hour),
		"escapes": {
			Token: "tok\"en\\",
			Data: map[string]string{
				"message":     "line\nbreak \"quoted\" back\\slash\ttab <b>&amp;</b> \u2028\u2029 \x01\x1f emoji 🎉 é",
				"invalid":     "bad \xff\xfe utf-8",
				"k\"ey\n":     "v",
				"":            "empty key",
				"empty value": "",
			},
			Android: &messaging.AndroidConfig{Priority: "normal"},
		},
		"no data, no android": {Token: "t"},
		"empty data map":      {Token: "t", Data: map[string]string{}, Android: &messaging.AndroidConfig{}},
		"android without priority": func() *messaging.Message {
			d := time.Minute
			return &messaging.Message{Token: "t", Android: &messaging.AndroidConfig{TTL: &d}}
		}(),
	} {
		t.Run(name, func(t *testing.T) { checkEncoding(t, m) })
	}
}

// TestAppendRequestRefuses: a field the encoder does not write, or a
// message the SDK would refuse, is an error naming the field, and nothing
// is written.
func TestAppendRequestRefuses(t *testing.T) {
	minus := -time.Second
	for want, edit := range map[string]func(m *messaging.Message){
		"no device token":                     func(m *messaging.Message) { m.Token = "" },
		"message.topic":                       func(m *messaging.Message) { m.Topic = "news" },
		"message.condition":                   func(m *messaging.Message) { m.Condition = "'a' in topics" },
		"message.notification":                func(m *messaging.Message) { m.Notification = &messaging.Notification{Title: "x"} },
		"message.webpush":                     func(m *messaging.Message) { m.Webpush = &messaging.WebpushConfig{} },
		"message.apns":                        func(m *messaging.Message) { m.APNS = &messaging.APNSConfig{} },
		"message.fcm_options":                 func(m *messaging.Message) { m.FCMOptions = &messaging.FCMOptions{} },
		"message.android.collapse_key":        func(m *messaging.Message) { m.Android.CollapseKey = "c" },
		"message.android.restricted_package":  func(m *messaging.Message) { m.Android.RestrictedPackageName = "p" },
		"message.android.data":                func(m *messaging.Message) { m.Android.Data = map[string]string{"a": "b"} },
		"message.android.notification":        func(m *messaging.Message) { m.Android.Notification = &messaging.AndroidNotification{} },
		"message.android.fcm_options":         func(m *messaging.Message) { m.Android.FCMOptions = &messaging.AndroidFCMOptions{} },
		"message.android.direct_boot_ok":      func(m *messaging.Message) { m.Android.DirectBootOK = true },
		"message.android.priority must be":    func(m *messaging.Message) { m.Android.Priority = "urgent" },
		"message.android.ttl must not be neg": func(m *messaging.Message) { m.Android.TTL = &minus },
	} {
		m := fcm.Build(normalized(t, buildCases[0].n()))
		edit(m)
		got, err := fcm.AppendRequest([]byte("x"), m)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: AppendRequest error = %v, want it to name %q", want, err, want)
		}
		if string(got) != "x" {
			t.Errorf("%s: AppendRequest wrote %q", want, got)
		}
		if err != nil && (strings.Contains(err.Error(), "device-token-1") || strings.Contains(err.Error(), "hello")) {
			t.Errorf("%s: error %q quotes the message", want, err)
		}
	}
}

// TestAppendRequestKnowsEveryField fails when an SDK upgrade adds a field
// to the message types: the encoder (and encodable) must then learn it.
func TestAppendRequestKnowsEveryField(t *testing.T) {
	for typ, want := range map[reflect.Type][]string{
		reflect.TypeFor[messaging.Message]():       {"Data", "Notification", "Android", "Webpush", "APNS", "FCMOptions", "Token", "Topic", "Condition"},
		reflect.TypeFor[messaging.AndroidConfig](): {"CollapseKey", "Priority", "TTL", "RestrictedPackageName", "Data", "Notification", "FCMOptions", "DirectBootOK"},
	} {
		var got []string
		for f := range typ.Fields() {
			got = append(got, f.Name)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%v has fields %v; the encoder knows %v", typ, got, want)
		}
	}
}

// TestAppendRequestUTF8 checks the encoder against what the SDK writes for
// strings that are not valid UTF-8: both send U+FFFD.
func TestAppendRequestUTF8(t *testing.T) {
	m := &messaging.Message{Token: "t", Data: map[string]string{"message": "a\xffb"}}
	got, err := fcm.AppendRequest(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Message struct{ Data map[string]string }
	}
	if err := json.Unmarshal(got, &v); err != nil || v.Message.Data["message"] != "a\uFFFDb" {
		t.Errorf("AppendRequest = %s (%v), want a U+FFFD", got, err)
	}
}

// FuzzAppendRequest compares the encoder with the SDK for any strings.
func FuzzAppendRequest(f *testing.F) {
	f.Add("message", "hello :tada:", "device-token", int64(3600))
	f.Add("k\"\n", "\x00\xff<>&\u2028", "t\\", int64(1500))
	f.Fuzz(func(t *testing.T, k, v, token string, ttlMillis int64) {
		if token == "" || ttlMillis < 0 {
			t.Skip()
		}
		ttl := time.Duration(ttlMillis) * time.Millisecond
		checkEncoding(t, &messaging.Message{
			Token:   token,
			Data:    map[string]string{k: v, "type": "message"},
			Android: &messaging.AndroidConfig{Priority: "high", TTL: &ttl},
		})
	})
}
