package explain_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/explain"
	"github.com/pushrelay/pushrelay/relay"
	"github.com/pushrelay/pushrelay/relay/wire"
)

func TestExplainShowsEachAppsRequestAndWhatWasRemoved(t *testing.T) {
	cfg, err := relay.ParseConfig([]byte(`
policy:
  mode: generic_no_channel
  rules: [{name: ops, channel_id: [ops], mode: full}]
apps:
  - platform: apple_rn
    apns: {topic: com.example.mm, auth_key_file: /missing/key.p8, key_id: ABC123DEFG, team_id: TEAM123456}
  - platform: android_rn
    fcm: {service_account_file: /missing/sa.json}
  - platform: "*"
    upstream: {url: "https://push.mattermost.com"}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := wire.Notification{Platform: "android_rn-v2", ServerID: "srv", DeviceID: "tok", Type: wire.TypeMessage,
		Message: "quarterly numbers", ChannelName: "Finance", SenderName: "alice", ChannelID: "fin", Version: "v2"}
	var out bytes.Buffer
	if err := explain.Explain(cfg, n, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		`platform "android_rn-v2" goes to app android_rn (apps[1], fcm)`,
		"app apple_rn -> apns https://api.push.apple.com: rule default (mode generic_no_channel)",
		"removed: message, channel_name",
		"header apns-topic      com.example.mm",
		`aps.alert              "You've received a new message."`,
		"app android_rn -> fcm: rule default (mode generic_no_channel)",
		`message.data.sender_name     "alice"`,
		"app * -> upstream https://push.mattermost.com",
		`platform        "android_rn-v2"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("explain lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "quarterly numbers") || strings.Contains(text, "Finance") {
		t.Errorf("removed content shown as leaving:\n%s", text)
	}

	n.ChannelID = "ops"
	out.Reset()
	explain.Explain(cfg, n, &out)
	if !strings.Contains(out.String(), "rule ops (mode full)") || !strings.Contains(out.String(), "removed: nothing") ||
		!strings.Contains(out.String(), `"quarterly numbers"`) {
		t.Errorf("the ops rule passes everything:\n%s", out.String())
	}
}

func TestExplainSaysWhereItGoes(t *testing.T) {
	cfg, err := relay.ParseConfig([]byte(`
apps:
  - platform: apple_rn
    apns: {topic: com.example.mm, auth_key_file: /missing/key.p8, key_id: ABC123DEFG, team_id: TEAM123456}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	for platform, want := range map[string]string{
		"apple_rn-v2": `platform "apple_rn-v2" goes to app apple_rn (apps[0], apns https://api.push.apple.com)`,
		"android_rn":  `platform "android_rn" goes to no app: none is named android_rn and there is no "*", so the relay answers FAIL`,
		"":            "this notification has no platform: the relay answers FAIL",
	} {
		var out bytes.Buffer
		n := wire.Notification{Platform: platform, ServerID: "srv", DeviceID: "tok", Type: wire.TypeMessage}
		if err := explain.Explain(cfg, n, &out); err != nil {
			t.Fatal(err)
		}
		if first, _, _ := strings.Cut(out.String(), "\n"); !strings.HasPrefix(first, want) {
			t.Errorf("platform %q: first line %q, want %q", platform, first, want)
		}
	}
}
