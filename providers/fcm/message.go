package fcm

import (
	"strconv"
	"strings"

	"firebase.google.com/go/v4/messaging"
	"github.com/kyokomi/emoji/v2"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// idLoadedSender is the sender_name of an id-loaded push: the app fetches
// the real one from the Mattermost server.
const idLoadedSender = "Someone"

// androidPriority is the Android priority of every message: high, so that
// a phone in Doze mode wakes to draw the notification.
const androidPriority = "high"

// Build returns the FCM HTTP v1 message Send posts for n, as the Mattermost
// apps expect it (WIRE.md): data only (no notification block, the app draws
// the notification), Android priority high, every value a string. n has
// been through the policy and wire.(*Notification).Normalize. Optional
// fields are present only when non-empty, so a field the policy removed
// never reaches Google. Build is pure and cheap: one map, sized once. Send
// does not call it: it encodes the same message straight from n (encode),
// and the tests hold the two to the same JSON.
func Build(n *wire.Notification) *messaging.Message {
	size := 11 // always, with badge and root_id
	switch {
	case n.IsIDLoaded:
		size += 6
	case isContent(n):
		size += 9
	}
	d := make(map[string]string, size)
	eachData(n, func(k, v string) { d[k] = v })
	return &messaging.Message{
		Token:   n.DeviceID,
		Data:    d,
		Android: &messaging.AndroidConfig{Priority: androidPriority},
	}
}

// isContent reports whether n carries the content of a message: a message
// or session push that is not id-loaded.
func isContent(n *wire.Notification) bool {
	return !n.IsIDLoaded && (n.Type == wire.TypeMessage || n.Type == wire.TypeSession)
}

// eachData calls set with every member of the data of n's message, name
// and value, each name once. It is the one list of the data keys: Build
// fills its map from it and encode writes the JSON straight from it,
// without a map.
func eachData(n *wire.Notification, set func(k, v string)) {
	set("ack_id", n.AckID)
	set("type", n.Type)
	set("sub_type", n.SubType)
	set("version", n.Version)
	set("channel_id", n.ChannelID)
	set("is_crt_enabled", strconv.FormatBool(n.IsCRTEnabled))
	set("server_id", n.ServerID)
	set("category", n.Category)
	set("signature", n.Signature)
	if n.Badge != wire.BadgeUnchanged {
		set("badge", strconv.Itoa(n.Badge)) // no allocation below 100
	}
	setIf(set, "root_id", n.RootID)

	switch {
	case n.IsIDLoaded:
		set("post_id", n.PostID)
		set("message", n.Message)
		set("id_loaded", "true")
		set("sender_id", n.SenderID)
		set("sender_name", idLoadedSender)
		set("team_id", n.TeamID)
	case isContent(n):
		setIf(set, "team_id", n.TeamID)
		setIf(set, "sender_id", n.SenderID)
		setIf(set, "sender_name", n.SenderName)
		setIf(set, "message", expandEmoji(n.Message)) // the text itself, passed on (policy full)
		setIf(set, "channel_name", n.ChannelName)
		setIf(set, "post_id", n.PostID)
		setIf(set, "override_username", n.OverrideUsername)
		setIf(set, "override_icon_url", n.OverrideIconURL)
		setIf(set, "from_webhook", n.FromWebhook)
	}
}

// setIf calls set(k, v) when v is not empty.
func setIf(set func(k, v string), k, v string) {
	if v != "" {
		set(k, v)
	}
}

// expandEmoji turns shortcodes (":tada:") into emoji in a message's text,
// as Mattermost's push proxy does and the APNs provider does too. Text
// without a colon is returned as is, at no cost.
func expandEmoji(s string) string {
	if strings.IndexByte(s, ':') < 0 {
		return s
	}
	return emoji.Sprint(s)
}
