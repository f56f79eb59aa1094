package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/policy"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// full is a message push as a Mattermost server set to "full" sends it.
func full() wire.Notification {
	return wire.Notification{
		AckID: "ack1", Platform: "apple_rn", ServerID: "srv1", DeviceID: "tok1", PostID: "post1",
		Category: "CAN_REPLY", Sound: "default", Message: "salary numbers attached", Badge: 3,
		TeamID: "team1", ChannelID: "chan1", RootID: "root1", ChannelName: "Board Room",
		Type: wire.TypeMessage, SenderID: "user1", SenderName: "Alice", OverrideUsername: "bot",
		OverrideIconURL: "https://x/icon.png", FromWebhook: "true", Version: "v2", IsCRTEnabled: true,
		Signature: "sig", AppVersion: 2,
	}
}

func TestModes(t *testing.T) {
	generic := policy.DefaultGenericText
	tests := []struct {
		mode    policy.Mode
		want    func(n *wire.Notification)
		removed string
	}{
		{policy.Full, func(n *wire.Notification) {}, ""},
		{policy.Generic, func(n *wire.Notification) { n.Message = generic }, "message"},
		{policy.GenericNoChannel, func(n *wire.Notification) { n.Message, n.ChannelName = generic, "" }, "message,channel_name"},
		{policy.IDOnly, func(n *wire.Notification) {
			n.Message, n.ChannelName, n.SenderName, n.OverrideUsername, n.OverrideIconURL = generic, "", "", "", ""
			n.IsIDLoaded, n.Category = true, wire.CategoryCanReply
		}, "message,channel_name,sender_name,override_username,override_icon_url"},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			p, err := policy.New(policy.Config{Mode: tt.mode})
			if err != nil {
				t.Fatal(err)
			}
			want := full()
			tt.want(&want)
			got, removed := p.Apply(full())
			if got != want {
				t.Errorf("Apply:\n got %+v\nwant %+v", got, want)
			}
			if removed.Fields.String() != tt.removed || removed.Mode != tt.mode || removed.Rule != "default" {
				t.Errorf("removed = %+v (%s), want fields %q", removed, removed.Fields, tt.removed)
			}
		})
	}
}

func TestIDOnlyLeavesNonMessageTypesUnmarked(t *testing.T) {
	for _, typ := range []string{wire.TypeClear, wire.TypeUpdateBadge, wire.TypeSession, wire.TypeTest} {
		n := full()
		n.Type = typ
		got, _ := policy.Default().Apply(n)
		if got.IsIDLoaded {
			t.Errorf("%s: marked is_id_loaded", typ)
		}
		if got.Message != policy.DefaultGenericText || got.ChannelName != "" || got.SenderName != "" {
			t.Errorf("%s: content left: %+v", typ, got)
		}
	}
	// A clear carries no text, and the policy adds none.
	got, removed := policy.Default().Apply(wire.Notification{Type: wire.TypeClear, ChannelID: "c"})
	if got.Message != "" || removed.Fields != 0 {
		t.Errorf("clear without text: got message %q, removed %s", got.Message, removed.Fields)
	}
}

func TestAlwaysPassFieldsSurviveEveryMode(t *testing.T) {
	every := make([]string, 0)
	for _, f := range policy.Fields() {
		every = append(every, f.String())
	}
	for _, mode := range []policy.Mode{policy.Full, policy.Generic, policy.GenericNoChannel, policy.IDOnly} {
		p, err := policy.New(policy.Config{Mode: mode, Drop: every})
		if err != nil {
			t.Fatal(err)
		}
		in := full()
		got, _ := p.Apply(in)
		if got.Signature != in.Signature || got.AckID != in.AckID || got.ServerID != in.ServerID ||
			got.DeviceID != in.DeviceID || got.Type != in.Type || got.Badge != in.Badge || got.Platform != in.Platform {
			t.Errorf("%s: an always-pass field changed: %+v", mode, got)
		}
	}
}

func TestDropAndRules(t *testing.T) {
	p, err := policy.New(policy.Config{
		Mode:        policy.IDOnly,
		Drop:        []string{"sender_id"},
		GenericText: "New activity",
		Rules: []policy.Rule{
			{Name: "ops", ChannelID: []string{"ops-chan"}, Mode: policy.Full},
			{ServerID: []string{"srv1"}, Type: []string{wire.TypeMessage}, Mode: policy.Generic, Drop: []string{"root_id"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}

	n := full()
	n.ChannelID = "ops-chan"
	got, removed := p.Apply(n)
	if removed.Rule != "ops" || got.Message != n.Message || got.SenderID != "" || removed.Fields.String() != "sender_id" {
		t.Errorf("ops rule: rule %q removed %s, message %q sender_id %q", removed.Rule, removed.Fields, got.Message, got.SenderID)
	}

	got, removed = p.Apply(full())
	if removed.Rule != "rules[1]" || removed.Mode != policy.Generic || got.Message != "New activity" ||
		got.RootID != "" || got.SenderName != "Alice" || got.IsIDLoaded {
		t.Errorf("rules[1]: %+v removed %+v", got, removed)
	}

	n = full()
	n.ServerID = "other"
	got, removed = p.Apply(n)
	if removed.Rule != "default" || !got.IsIDLoaded || got.Message != "New activity" {
		t.Errorf("default: %+v removed %+v", got, removed)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		cfg  policy.Config
		want string
	}{
		{policy.Config{Mode: "secret"}, `policy.mode: unknown mode "secret"`},
		{policy.Config{Drop: []string{"message", "colour"}}, `policy.drop[1]: unknown field "colour"`},
		{policy.Config{Drop: []string{"signature"}}, `policy.drop[0]: signature always passes`},
		{policy.Config{Rules: []policy.Rule{{Mode: policy.Full}}}, `policy.rules[0]: matches nothing`},
		{policy.Config{Rules: []policy.Rule{{TeamID: []string{"t"}, Mode: "all"}}}, `policy.rules[0].mode: unknown mode "all"`},
		{policy.Config{Rules: []policy.Rule{{TeamID: []string{"t"}, Drop: []string{"device_id"}}}}, `policy.rules[0].drop[0]: device_id always passes`},
		{policy.Config{GenericText: strings.Repeat("x", 3000)}, `policy.generic_text: longer than 2047 bytes`},
	}
	for _, tt := range tests {
		_, err := policy.New(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", tt.cfg, err, tt.want)
		}
	}
}

func ExamplePolicy_Apply() {
	p, _ := policy.New(policy.Config{Mode: policy.IDOnly})
	out, removed := p.Apply(wire.Notification{
		Type: wire.TypeMessage, Message: "the launch slipped", ChannelName: "Launch", SenderName: "Bob",
		ChannelID: "c1", PostID: "p1", Signature: "sig",
	})
	fmt.Println(out.Message, out.IsIDLoaded, out.ChannelName == "", out.SenderName == "")
	fmt.Println("removed:", removed.Fields)
	// Output:
	// You've received a new message. true true true
	// removed: message,channel_name,sender_name
}
