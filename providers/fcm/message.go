package fcm

import (
	"strconv"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// idLoadedSender is the sender_name of an id-loaded push: the app fetches
// the real one from the Mattermost server.
const idLoadedSender = "Someone"

// Build returns the FCM HTTP v1 message Send posts for n, as the Mattermost
// apps expect it (WIRE.md): data only (no notification block, the app draws
// the notification), Android priority high, every value a string. n has
// been through the policy and wire.(*Notification).Normalize. Optional
// fields are present only when non-empty, so a field the policy removed
// never reaches Google. Build is pure and cheap: one map, sized once.
func Build(n *wire.Notification) *messaging.Message {
	isContent := !n.IsIDLoaded && (n.Type == wire.TypeMessage || n.Type == wire.TypeSession)
	size := 11 // always, with badge and root_id
	switch {
	case n.IsIDLoaded:
		size += 6
	case isContent:
		size += 9
	}
	d := make(map[string]string, size)
	d["ack_id"] = n.AckID
	d["type"] = n.Type
	d["sub_type"] = n.SubType
	d["version"] = n.Version
	d["channel_id"] = n.ChannelID
	d["is_crt_enabled"] = strconv.FormatBool(n.IsCRTEnabled)
	d["server_id"] = n.ServerID
	d["category"] = n.Category
	d["signature"] = n.Signature
	if n.Badge != wire.BadgeUnchanged {
		d["badge"] = strconv.Itoa(n.Badge)
	}
	setIf(d, "root_id", n.RootID)

	switch {
	case n.IsIDLoaded:
		d["post_id"] = n.PostID
		d["message"] = n.Message
		d["id_loaded"] = "true"
		d["sender_id"] = n.SenderID
		d["sender_name"] = idLoadedSender
		d["team_id"] = n.TeamID
	case isContent:
		setIf(d, "team_id", n.TeamID)
		setIf(d, "sender_id", n.SenderID)
		setIf(d, "sender_name", n.SenderName)
		setIf(d, "message", n.Message)
		setIf(d, "channel_name", n.ChannelName)
		setIf(d, "post_id", n.PostID)
		setIf(d, "override_username", n.OverrideUsername)
		setIf(d, "override_icon_url", n.OverrideIconURL)
		setIf(d, "from_webhook", n.FromWebhook)
	}
	return &messaging.Message{
		Token:   n.DeviceID,
		Data:    d,
		Android: &messaging.AndroidConfig{Priority: "high"},
	}
}

// setIf sets d[k] to v when v is not empty.
func setIf(d map[string]string, k, v string) {
	if v != "" {
		d[k] = v
	}
}
