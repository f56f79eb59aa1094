package relay_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay"
)

// harness is a relay started from a YAML file, as `pushrelay serve` starts
// it, in front of the APNs and FCM look-alikes.
type harness struct {
	t      testing.TB
	logs   *syncBuffer
	apple  *sandbox.APNs
	google *sandbox.FCM
	srv    *relay.Server
	url    string
	path   string // the config file
}

func start(t testing.TB, policyYAML string, extraYAML ...string) *harness {
	t.Helper()
	apple, google := sandbox.NewAPNs(), sandbox.NewFCM()
	t.Cleanup(apple.Close)
	t.Cleanup(google.Close)
	dir := t.TempDir()
	creds, err := sandbox.WriteCredentials(dir, apple, google)
	if err != nil {
		t.Fatal(err)
	}
	// The spool section always names a fresh dir; a test's own spool
	// settings join it.
	spoolLine := fmt.Sprintf("spool: {dir: %q}", filepath.Join(dir, "spool"))
	metricsLine, logLine := "metrics: {listen: 127.0.0.1:0}", "log: {level: info}"
	for i, extra := range extraYAML {
		if rest, ok := strings.CutPrefix(extra, "spool: {"); ok {
			spoolLine, extraYAML[i] = fmt.Sprintf("spool: {dir: %q, %s", filepath.Join(dir, "spool"), rest), ""
		}
		if rest, ok := strings.CutPrefix(extra, "metrics: {"); ok {
			metricsLine, extraYAML[i] = "metrics: {listen: 127.0.0.1:0, "+rest, ""
		}
		if rest, ok := strings.CutPrefix(extra, "log: {"); ok {
			logLine, extraYAML[i] = "log: {level: info, "+rest, ""
		}
	}
	yaml := fmt.Sprintf(`
listen: 127.0.0.1:0
%s
policy: %s
delivery: {timeout: 1s, backoff: {initial: 50ms, max: 200ms}}
%s
egress: {ca_file: %q}
apps:
  - platform: apple_rn
    apns: {topic: com.mattermost.rn, auth_key_file: %q, key_id: %s, team_id: %s, endpoint: %q}
  - platform: android_rn
    fcm: {service_account_file: %q, endpoint: %q}
%s
%s
`, metricsLine, policyYAML, spoolLine, creds.CAFile, creds.APNsKeyFile, creds.KeyID, creds.TeamID, apple.URL(), creds.ServiceAccountFile, google.URL(), logLine, strings.Join(extraYAML, "\n"))
	path := filepath.Join(dir, "pushrelay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := relay.LoadConfig(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := relay.NewServer(cfg, relay.TestProviders, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })
	return &harness{t: t, logs: logs, apple: apple, google: google, srv: srv, url: "http://" + srv.Addr(), path: path}
}

// scrape returns the relay's /metrics in the text format.
func (h *harness) scrape() string {
	h.t.Helper()
	resp, err := http.Get("http://" + h.srv.MetricsAddr() + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return string(body)
}

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// push posts msg exactly as the Mattermost server does: json.Marshal of its
// model.PushNotification, no Content-Type, its User-Agent, HTTP/1.1.
func (h *harness) push(msg *model.PushNotification) (int, map[string]string) {
	h.t.Helper()
	body, err := json.Marshal(msg)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.raw(http.MethodPost, "/api/v1/send_push", body)
}

func (h *harness) raw(method, path string, body []byte) (int, map[string]string) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("User-Agent", "Mattermost-Bot/1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer map[string]string
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &answer); err != nil {
		h.t.Fatalf("%s %s: HTTP %d, answer is not JSON: %q", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, answer
}

func (h *harness) lastAPNs() sandbox.APNsRequest {
	h.t.Helper()
	reqs := h.apple.Requests()
	if len(reqs) == 0 {
		h.t.Fatal("nothing reached APNs")
	}
	return reqs[len(reqs)-1]
}

func (h *harness) lastFCM() map[string]any {
	h.t.Helper()
	reqs := h.google.Requests()
	if len(reqs) == 0 {
		h.t.Fatal("nothing reached FCM")
	}
	var body struct {
		Message map[string]any `json:"message"`
	}
	if err := json.Unmarshal(reqs[len(reqs)-1].Body, &body); err != nil {
		h.t.Fatal(err)
	}
	return body.Message
}

// mmMessage is a channel message as a Mattermost server set to send full
// content builds it.
func mmMessage(platform, token string) *model.PushNotification {
	return &model.PushNotification{
		AckId: "ack-1", Platform: platform, ServerId: "srv-1", DeviceId: token, PostId: "post-1",
		Category: model.CategoryCanReply, Message: "the merger closes friday :tada:", Badge: 2,
		TeamId: "team-1", ChannelId: "chan-1", ChannelName: "Board Room", Type: model.PushTypeMessage,
		SenderId: "user-1", SenderName: "alice", Version: model.PushMessageV2, Signature: "jwt.sig",
	}
}

func jsonMap(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("payload is not JSON: %v: %s", err, raw)
	}
	return m
}

func assertEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func TestAPNsPayloadsUnderFullPolicy(t *testing.T) {
	h := start(t, "{mode: full}")
	// Shortcodes are expanded by the same library as the old proxy, with its
	// trailing pad, so the phone shows the very same text.
	const tada = "the merger closes friday 🎉 "
	custom := func(extra map[string]any) map[string]any {
		m := map[string]any{"type": "message", "sub_type": "", "server_id": "srv-1", "is_crt_enabled": false,
			"signature": "jwt.sig", "ack_id": "ack-1", "channel_id": "chan-1", "team_id": "team-1",
			"sender_id": "user-1", "sender_name": "alice", "post_id": "post-1"}
		for k, v := range extra {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	tests := []struct {
		name     string
		msg      func() *model.PushNotification
		pushType string
		topic    string
		aps      map[string]any
		custom   map[string]any
	}{
		{
			name: "message v2 with channel name",
			msg:  func() *model.PushNotification { return mmMessage("apple_rn", "tok-a") },
			aps: map[string]any{"alert": map[string]any{"title": "Board Room", "body": tada},
				"badge": 2.0, "category": "CAN_REPLY", "sound": "default", "mutable-content": 1.0,
				"content-available": 1.0, "thread-id": "chan-1"},
			custom: custom(map[string]any{"version": "v2", "channel_name": "Board Room"}),
		},
		{
			name: "message v1: alert is a string",
			msg: func() *model.PushNotification {
				m := mmMessage("apple_rn", "tok-a")
				m.Version = ""
				return m
			},
			aps: map[string]any{"alert": tada, "badge": 2.0, "category": "CAN_REPLY",
				"sound": "default", "mutable-content": 1.0, "content-available": 1.0, "thread-id": "chan-1"},
			custom: custom(map[string]any{"version": "", "channel_name": "Board Room"}),
		},
		{
			name: "thread reply with CRT threads by root",
			msg: func() *model.PushNotification {
				m := mmMessage("apple_rn", "tok-a")
				m.RootId, m.IsCRTEnabled = "root-1", true
				return m
			},
			aps: map[string]any{"alert": map[string]any{"title": "Board Room", "body": tada},
				"badge": 2.0, "category": "CAN_REPLY", "sound": "default", "mutable-content": 1.0,
				"content-available": 1.0, "thread-id": "root-1"},
			custom: custom(map[string]any{"version": "v2", "channel_name": "Board Room", "root_id": "root-1", "is_crt_enabled": true}),
		},
		{
			name: "id-loaded push from the server",
			msg: func() *model.PushNotification {
				m := mmMessage("apple_rn", "tok-a")
				m.IsIdLoaded, m.Message, m.ChannelName, m.SenderName = true, "You've received a new message.", "", ""
				return m
			},
			aps: map[string]any{"alert": "You've received a new message.", "badge": 2.0, "category": "CAN_REPLY",
				"sound": "default", "mutable-content": 1.0, "content-available": 1.0, "thread-id": "chan-1"},
			custom: custom(map[string]any{"version": "v2", "id_loaded": true, "sender_name": nil}),
		},
		{
			name: "session",
			msg: func() *model.PushNotification {
				m := mmMessage("apple_rn", "tok-a")
				m.Type, m.ChannelName = model.PushTypeSession, ""
				return m
			},
			aps: map[string]any{"alert": tada, "badge": 2.0, "category": "CAN_REPLY",
				"sound": "default", "mutable-content": 1.0, "thread-id": "chan-1"},
			custom: custom(map[string]any{"type": "session", "version": "v2"}),
		},
		{
			name: "clear from an app version 2 sends badge 1",
			msg: func() *model.PushNotification {
				return &model.PushNotification{AckId: "ack-1", Platform: "apple_rn-v2", ServerId: "srv-1",
					DeviceId: "tok-a", Type: model.PushTypeClear, ChannelId: "chan-1", Signature: "jwt.sig"}
			},
			aps:    map[string]any{"badge": 1.0, "content-available": 1.0, "thread-id": "chan-1"},
			custom: map[string]any{"type": "clear", "sub_type": "", "server_id": "srv-1", "is_crt_enabled": false, "signature": "jwt.sig", "ack_id": "ack-1", "channel_id": "chan-1"},
		},
		{
			name: "clear from an app version 1 keeps badge 0",
			msg: func() *model.PushNotification {
				return &model.PushNotification{Platform: "apple_rn", ServerId: "srv-1", DeviceId: "tok-a",
					Type: model.PushTypeClear, ChannelId: "chan-1"}
			},
			aps:    map[string]any{"badge": 0.0, "content-available": 1.0, "thread-id": "chan-1"},
			custom: map[string]any{"type": "clear", "sub_type": "", "server_id": "srv-1", "is_crt_enabled": false, "signature": "NO_SIGNATURE", "channel_id": "chan-1"},
		},
		{
			name: "update_badge",
			msg: func() *model.PushNotification {
				return &model.PushNotification{Platform: "apple_rn", ServerId: "srv-1", DeviceId: "tok-a",
					Type: model.PushTypeUpdateBadge, Badge: 5, Signature: "jwt.sig"}
			},
			aps:    map[string]any{"badge": 5.0},
			custom: map[string]any{"type": "update_badge", "sub_type": "", "server_id": "srv-1", "is_crt_enabled": false, "signature": "jwt.sig"},
		},
		{
			name: "test push",
			msg: func() *model.PushNotification {
				return &model.PushNotification{Platform: "apple_rn", ServerId: "srv-1", DeviceId: "tok-a",
					Type: model.PushTypeTest, Badge: -1, Signature: "jwt.sig"}
			},
			aps:    map[string]any{"content-available": 1.0},
			custom: map[string]any{"type": "test", "sub_type": "", "server_id": "srv-1", "is_crt_enabled": false, "signature": "jwt.sig"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, answer := h.push(tt.msg())
			if code != 200 || answer["status"] != "OK" {
				t.Fatalf("answer: HTTP %d %v", code, answer)
			}
			r := h.lastAPNs()
			if r.Proto != "HTTP/2.0" || r.Token != "tok-a" {
				t.Errorf("proto %s token %s", r.Proto, r.Token)
			}
			for header, want := range map[string]string{"apns-topic": "com.mattermost.rn", "apns-push-type": "alert", "apns-priority": "10"} {
				if got := r.Header.Get(header); got != want {
					t.Errorf("%s = %q, want %q", header, got, want)
				}
			}
			if !strings.HasPrefix(r.Header.Get("authorization"), "bearer ") {
				t.Errorf("no bearer token: %q", r.Header.Get("authorization"))
			}
			want := map[string]any{"aps": tt.aps}
			for k, v := range tt.custom {
				want[k] = v
			}
			assertEqual(t, "APNs payload", jsonMap(t, r.Body), want)
		})
	}
}

func TestVoIPGoesToTheVoIPTopic(t *testing.T) {
	h := start(t, "{mode: full}")
	body := []byte(`{"platform":"apple_rn","server_id":"srv-1","device_id":"voip-tok","type":"message","sub_type":"calls",` +
		`"transport":"voip","channel_id":"chan-1","message":"alice is calling","signature":"jwt.sig","badge":1}`)
	code, answer := h.raw(http.MethodPost, "/api/v1/send_push", body)
	if code != 200 || answer["status"] != "OK" {
		t.Fatalf("answer: HTTP %d %v", code, answer)
	}
	r := h.lastAPNs()
	if r.Header.Get("apns-topic") != "com.mattermost.rn.voip" || r.Header.Get("apns-push-type") != "voip" {
		t.Errorf("headers: topic %q push type %q", r.Header.Get("apns-topic"), r.Header.Get("apns-push-type"))
	}
	p := jsonMap(t, r.Body)
	assertEqual(t, "voip aps", p["aps"], map[string]any{})
	if p["sub_type"] != "calls" || p["channel_id"] != "chan-1" || p["signature"] != "jwt.sig" {
		t.Errorf("voip custom keys: %v", p)
	}
}

func TestFCMBodiesUnderFullPolicy(t *testing.T) {
	h := start(t, "{mode: full}")
	always := func(extra map[string]string) map[string]any {
		m := map[string]any{"ack_id": "ack-1", "type": "message", "sub_type": "", "version": "v2", "channel_id": "chan-1",
			"is_crt_enabled": "false", "server_id": "srv-1", "category": "CAN_REPLY", "signature": "jwt.sig", "badge": "2"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name string
		msg  func() *model.PushNotification
		data map[string]any
	}{
		{
			name: "message",
			msg:  func() *model.PushNotification { return mmMessage("android_rn", "fcm-tok") },
			data: always(map[string]string{"team_id": "team-1", "sender_id": "user-1", "sender_name": "alice",
				"message": "the merger closes friday \U0001F389 ", "channel_name": "Board Room", "post_id": "post-1"}), // shortcodes expanded
		},
		{
			name: "id-loaded",
			msg: func() *model.PushNotification {
				m := mmMessage("android_rn-v2", "fcm-tok")
				m.IsIdLoaded, m.Message, m.ChannelName, m.SenderName, m.RootId = true, "You've received a new message.", "", "", "root-1"
				return m
			},
			data: always(map[string]string{"post_id": "post-1", "message": "You've received a new message.", "id_loaded": "true",
				"sender_id": "user-1", "sender_name": "Someone", "team_id": "team-1", "root_id": "root-1"}),
		},
		{
			name: "clear",
			msg: func() *model.PushNotification {
				return &model.PushNotification{AckId: "ack-1", Platform: "android_rn", ServerId: "srv-1", DeviceId: "fcm-tok",
					Type: model.PushTypeClear, ChannelId: "chan-1", Badge: 2, Version: "v2", Signature: "jwt.sig", Category: "CAN_REPLY"}
			},
			data: always(map[string]string{"type": "clear"}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, answer := h.push(tt.msg())
			if code != 200 || answer["status"] != "OK" {
				t.Fatalf("answer: HTTP %d %v", code, answer)
			}
			got := h.lastFCM()
			// The TTL is what is left of spool.max_age (1h): FCM drops the
			// message for an offline phone when it stops being worth showing.
			if ttl := got["android"].(map[string]any)["ttl"]; ttl != "3599s" && ttl != "3600s" {
				t.Errorf("android.ttl = %v, want about 3600s", ttl)
			}
			delete(got["android"].(map[string]any), "ttl")
			assertEqual(t, "FCM message", got, map[string]any{
				"token": "fcm-tok", "data": tt.data, "android": map[string]any{"priority": "high"},
			})
		})
	}
}

func TestDefaultPolicySendsIDsOnly(t *testing.T) {
	h := start(t, "{}")
	secrets := []string{"the merger closes friday", "Board Room", "alice"}
	for _, platform := range []string{"apple_rn", "android_rn"} {
		code, answer := h.push(mmMessage(platform, "tok-"+platform))
		if code != 200 || answer["status"] != "OK" {
			t.Fatalf("%s: HTTP %d %v", platform, code, answer)
		}
	}
	for _, body := range [][]byte{h.lastAPNs().Body, h.google.Requests()[0].Body} {
		for _, s := range secrets {
			if bytes.Contains(body, []byte(s)) {
				t.Errorf("%q left the relay under id_only: %s", s, body)
			}
		}
		if !bytes.Contains(body, []byte("You've received a new message.")) {
			t.Errorf("no generic text: %s", body)
		}
	}
	if p := jsonMap(t, h.lastAPNs().Body); p["id_loaded"] != true || p["post_id"] != "post-1" {
		t.Errorf("APNs payload is not id-loaded: %v", p)
	}
	if data := h.lastFCM()["data"].(map[string]any); data["id_loaded"] != "true" || data["sender_name"] != "Someone" {
		t.Errorf("FCM payload is not id-loaded: %v", data)
	}
}

func TestOutcomes(t *testing.T) {
	h := start(t, "{}")
	tests := []struct {
		name   string
		setup  func()
		msg    *model.PushNotification
		status string
		errHas string
	}{
		{"APNs delivered", nil, mmMessage("apple_rn", "good"), "OK", ""},
		{"APNs Unregistered -> REMOVE", func() { h.apple.KillToken("gone", "Unregistered") }, mmMessage("apple_rn", "gone"), "REMOVE", ""},
		{"APNs BadDeviceToken -> REMOVE", func() { h.apple.KillToken("bad", "BadDeviceToken") }, mmMessage("apple_rn", "bad"), "REMOVE", ""},
		{"APNs 500 is not REMOVE: kept for retry", func() { h.apple.Fail(sandbox.Fault{Status: 500, Count: 1}) }, mmMessage("apple_rn", "good"), "OK", ""},
		{"APNs TopicDisallowed -> FAIL with Apple's reason", func() { h.apple.Fail(sandbox.Fault{Status: 400, Reason: "TopicDisallowed", Count: 1}) }, mmMessage("apple_rn", "good"), "FAIL", "TopicDisallowed"},
		{"FCM UNREGISTERED -> REMOVE", func() { h.google.KillToken("fgone", "UNREGISTERED") }, mmMessage("android_rn", "fgone"), "REMOVE", ""},
		{"FCM SENDER_ID_MISMATCH -> REMOVE", func() { h.google.KillToken("fother", "SENDER_ID_MISMATCH") }, mmMessage("android_rn", "fother"), "REMOVE", ""},
		{"FCM 503 is not REMOVE: kept for retry", func() { h.google.Fail(sandbox.Fault{Status: 503}) }, mmMessage("android_rn", "fgood"), "OK", ""},
		{"unknown platform -> FAIL", nil, mmMessage("windows_phone", "x"), "FAIL", "platform is not configured"},
		{"missing server_id -> FAIL", nil, &model.PushNotification{Platform: "apple_rn", DeviceId: "x", Type: "message"}, "FAIL", "server_id is missing"},
		{"missing device_id -> FAIL", nil, &model.PushNotification{Platform: "apple_rn", ServerId: "s", Type: "message"}, "FAIL", "device_id is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			defer h.apple.Recover()
			defer h.google.Recover()
			code, answer := h.push(tt.msg)
			if code != 200 || answer["status"] != tt.status || !strings.Contains(answer["error"], tt.errHas) {
				t.Errorf("got HTTP %d %v, want 200 %s containing %q", code, answer, tt.status, tt.errHas)
			}
			if strings.Contains(answer["error"], tt.msg.DeviceId) && tt.msg.DeviceId != "" {
				t.Errorf("the error names the device token: %q", answer["error"])
			}
		})
	}
}

func TestRequestsThatAreNotPushes(t *testing.T) {
	h := start(t, "{}")
	big := `{"platform":"apple_rn","server_id":"s","device_id":"d","message":"` + strings.Repeat("x", 70000) + `"}`
	tests := []struct {
		name, method, path, body string
		code                     int
	}{
		{"bad JSON", "POST", "/api/v1/send_push", `{"platform":`, 400},
		{"not an object", "POST", "/api/v1/send_push", `"hello"`, 400},
		{"wrong type", "POST", "/api/v1/send_push", `{"platform":"apple_rn","badge":"three"}`, 400},
		{"empty body", "POST", "/api/v1/send_push", ``, 400},
		{"over max_body_bytes", "POST", "/api/v1/send_push", big, 413},
		{"wrong method", "GET", "/api/v1/send_push", ``, 405},
		{"unknown path", "POST", "/api/v2/send_push", `{}`, 404},
		{"ack without id: 200 FAIL, as the old proxy", "POST", "/api/v1/ack", `{"platform":"apple_rn","type":"message"}`, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, answer := h.raw(tt.method, tt.path, []byte(tt.body))
			if code != tt.code || answer["error"] == "" {
				t.Errorf("got HTTP %d %v, want %d with an error", code, answer, tt.code)
			}
		})
	}
	if n := len(h.apple.Requests()) + len(h.google.Requests()); n != 0 {
		t.Errorf("%d malformed requests reached a provider", n)
	}
}

func TestServiceRoutes(t *testing.T) {
	h := start(t, "{}")
	ack, _ := json.Marshal(model.PushNotificationAck{Id: "ack-1", ClientPlatform: "android_rn", NotificationType: "message", ClientReceivedAt: time.Now().UnixMilli()})
	for _, tt := range []struct {
		method, path string
		body         []byte
		want         string
	}{
		{"POST", "/api/v1/ack", ack, `"status":"OK"`},
		{"GET", "/version", nil, `"version":"dev"`},
		{"GET", "/", nil, `"status":"OK"`},
		{"GET", "/healthz", nil, `"status":"OK"`},
		{"GET", "/readyz", nil, `"status":"OK"`},
	} {
		req, _ := http.NewRequest(tt.method, h.url+tt.path, bytes.NewReader(tt.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s %s: HTTP %d %s", tt.method, tt.path, resp.StatusCode, body)
		}
	}
}

func TestMetrics(t *testing.T) {
	h := start(t, "{}")
	h.apple.KillToken("gone", "Unregistered")
	h.push(mmMessage("apple_rn", "good"))
	h.push(mmMessage("apple_rn", "gone"))
	h.push(mmMessage("android_rn", "good"))
	h.raw("POST", "/api/v1/send_push", []byte("{"))

	resp, err := http.Get("http://" + h.srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`pushrelay_notifications_total{app="apple_rn",outcome="delivered",provider="apns",type="message"} 1`,
		`pushrelay_notifications_total{app="apple_rn",outcome="removed",provider="apns",type="message"} 1`,
		`pushrelay_notifications_total{app="android_rn",outcome="delivered",provider="fcm",type="message"} 1`,
		`pushrelay_policy_fields_removed_total{field="message"} 3`,
		`pushrelay_provider_request_duration_seconds_count{provider="apns"} 2`,
		`pushrelay_provider_errors_total{provider="apns",reason="Unregistered"} 1`,
		`pushrelay_ingress_requests_total{code="200",route="send_push"} 3`,
		`pushrelay_ingress_requests_total{code="400",route="send_push"} 1`,
		`pushrelay_ingress_rejected_total{reason="bad_request"} 1`,
		`pushrelay_build_info{version="dev"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, leak := range []string{"good", "gone", "Board Room", "srv-1"} {
		if strings.Contains(string(body), `"`+leak+`"`) {
			t.Errorf("request content %q is a metric label", leak)
		}
	}
}

func TestAuditLogSaysWhatWasRemovedNeverTheValues(t *testing.T) {
	h := start(t, "{mode: generic, rules: [{name: execs, team_id: [team-1], mode: id_only}]}", "log: {audit: true}")
	h.push(mmMessage("apple_rn", "secret-device-token"))
	h.push(mmMessage("android_rn-v2", "another-secret-token"))
	logs := h.logs.String()
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["msg"] == "push" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d audit lines at info level, want 2:\n%s", len(lines), logs)
	}
	for _, l := range lines {
		if l["rule"] != "execs" || l["removed"] != "message,channel_name,sender_name" || l["outcome"] != "delivered" || l["level"] != "INFO" {
			t.Errorf("audit line: %v", l)
		}
	}
	for _, secret := range []string{"merger", "Board Room", "alice", "secret-device-token", "another-secret-token", "jwt.sig"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q:\n%s", secret, logs)
		}
	}
}

func TestEachModeEndToEnd(t *testing.T) {
	type want struct{ message, channel, sender bool }
	for _, tt := range []struct {
		mode string
		want want
	}{
		{"full", want{true, true, true}},
		{"generic", want{false, true, true}},
		{"generic_no_channel", want{false, false, true}},
		{"id_only", want{false, false, false}},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			h := start(t, "{mode: "+tt.mode+"}")
			h.push(mmMessage("apple_rn", "tok-a"))
			h.push(mmMessage("android_rn", "tok-f"))
			for name, body := range map[string][]byte{"APNs": h.lastAPNs().Body, "FCM": h.google.Requests()[0].Body} {
				got := want{
					message: bytes.Contains(body, []byte("the merger closes friday")),
					channel: bytes.Contains(body, []byte("Board Room")),
					sender:  bytes.Contains(body, []byte(`"alice"`)),
				}
				if got != tt.want {
					t.Errorf("%s under %s: message/channel/sender present = %+v, want %+v\n%s", name, tt.mode, got, tt.want, body)
				}
				if !tt.want.message && !bytes.Contains(body, []byte("You've received a new message.")) {
					t.Errorf("%s under %s: no generic text", name, tt.mode)
				}
			}
		})
	}
}
