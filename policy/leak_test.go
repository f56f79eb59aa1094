package policy_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/policy"
	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// marked fills every text field with a value that names its field, so the
// bytes sent upstream can be searched for each one.
func marked(suffix string, typ string, idLoaded bool, version string) wire.Notification {
	v := func(field string) string { return "LEAK-" + field + "-" + suffix }
	return wire.Notification{
		AckID: "ack", Platform: "apple_rn", ServerID: "srv", DeviceID: "tok", Signature: "sig", Badge: 4,
		Type: typ, IsIDLoaded: idLoaded, Version: version, AppVersion: 2,
		Message: v("message"), ChannelName: v("channel_name"), SenderName: v("sender_name"),
		OverrideUsername: v("override_username"), OverrideIconURL: v("override_icon_url"),
		PostID: v("post_id"), Category: v("category"), Sound: v("sound"), TeamID: v("team_id"),
		ChannelID: v("channel_id"), RootID: v("root_id"), SubType: v("sub_type"), SenderID: v("sender_id"),
		FromWebhook: v("from_webhook"), IsCRTEnabled: true,
	}
}

// upstreamBytes is everything the providers would put on the wire for n:
// the APNs headers and payload, and the FCM v1 body.
func upstreamBytes(t *testing.T, n *wire.Notification) []byte {
	t.Helper()
	an := apns.Build(n, "com.example.app")
	payload, err := json.Marshal(an.Payload)
	if err != nil {
		t.Fatal(err)
	}
	fcmBody, err := json.Marshal(map[string]any{"message": fcm.Build(n)})
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Join([][]byte{[]byte(an.Topic), []byte(an.CollapseID), []byte(an.ApnsID), []byte(an.DeviceToken),
		[]byte(an.PushType), payload, fcmBody}, []byte("\n"))
}

// checkNoLeak applies a policy of mode and drops to a marked notification
// and asserts that no removed field's value reaches the upstream bytes,
// that kept content does (so the check can fail), and that the fields that
// always pass are unchanged.
func checkNoLeak(t *testing.T, mode policy.Mode, drops []string, in wire.Notification) {
	t.Helper()
	p, err := policy.New(policy.Config{Mode: mode, Drop: drops})
	if err != nil {
		t.Fatal(err)
	}
	out, removed := p.Apply(in)
	sent := upstreamBytes(t, &out)
	had, _ := json.Marshal(in)
	mustGo := map[policy.Field]bool{}
	for _, f := range []policy.Field{policy.FieldMessage, policy.FieldChannelName, policy.FieldSenderName,
		policy.FieldOverrideUsername, policy.FieldOverrideIconURL} {
		mustGo[f] = mode != policy.Full
	}
	if mode != policy.IDOnly {
		mustGo[policy.FieldSenderName] = false
		mustGo[policy.FieldOverrideUsername] = false
		mustGo[policy.FieldOverrideIconURL] = false
	}
	if mode == policy.Generic {
		mustGo[policy.FieldChannelName] = false
	}
	for _, d := range drops {
		f, _ := policy.ParseField(d)
		mustGo[f] = true
	}
	for f, gone := range mustGo {
		if !gone {
			continue
		}
		marker := "LEAK-" + f.String() + "-"
		if bytes.Contains(sent, []byte(marker)) {
			t.Errorf("mode %s drop %v: %s reached the upstream bytes:\n%s", mode, drops, f, sent)
		}
		if bytes.Contains(had, []byte(marker)) && !removed.Fields.Has(f) {
			t.Errorf("mode %s drop %v: %s removed but not reported", mode, drops, f)
		}
	}
	if out.Signature != in.Signature || out.AckID != in.AckID || out.ServerID != in.ServerID ||
		out.DeviceID != in.DeviceID || out.Type != in.Type || out.Badge != in.Badge {
		t.Errorf("mode %s drop %v: an always-pass field changed", mode, drops)
	}
	// A message push under full mode shows its text: the search above can find things.
	if mode == policy.Full && len(drops) == 0 && in.Type == wire.TypeMessage && !in.IsIDLoaded &&
		!bytes.Contains(sent, []byte("LEAK-message-")) {
		t.Errorf("full mode: the message did not reach the upstream bytes, the leak check is blind")
	}
}

var (
	modes = []policy.Mode{policy.Full, policy.Generic, policy.GenericNoChannel, policy.IDOnly}
	types = []string{wire.TypeMessage, wire.TypeSession, wire.TypeClear, wire.TypeUpdateBadge, wire.TypeTest, "other"}
)

// TestNoRemovedFieldLeaks is the property over random policies and
// notifications; FuzzNoRemovedFieldLeaks lets `go test -fuzz` search further.
func TestNoRemovedFieldLeaks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fields := policy.Fields()
	for i := 0; i < 2000; i++ {
		var drops []string
		for _, f := range fields {
			if rng.IntN(4) == 0 {
				drops = append(drops, f.String())
			}
		}
		in := marked(strings.Repeat("x", rng.IntN(5)), types[rng.IntN(len(types))], rng.IntN(3) == 0, []string{"", "v2"}[rng.IntN(2)])
		checkNoLeak(t, modes[rng.IntN(len(modes))], drops, in)
	}
}

func FuzzNoRemovedFieldLeaks(f *testing.F) {
	f.Add(uint8(3), uint32(0), "x", uint8(0), false, true)
	f.Add(uint8(0), uint32(1<<5), ":tada: <b>&</b>", uint8(1), true, false)
	f.Fuzz(func(t *testing.T, mode uint8, dropMask uint32, suffix string, typ uint8, idLoaded, v2 bool) {
		var drops []string
		for _, fl := range policy.Fields() {
			if dropMask&(1<<uint(fl)) != 0 {
				drops = append(drops, fl.String())
			}
		}
		version := ""
		if v2 {
			version = "v2"
		}
		checkNoLeak(t, modes[int(mode)%len(modes)], drops, marked(suffix, types[int(typ)%len(types)], idLoaded, version))
	})
}
