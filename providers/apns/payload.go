package apns

import (
	"encoding/json"
	"strings"

	"github.com/kyokomi/emoji/v2"
	"github.com/sideshow/apns2"

	"github.com/pushrelay/pushrelay/providers/jsonobject"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// soundDefault is the sound of message, session and id-loaded pushes.
const soundDefault = "default"

// Build returns what Send posts for n to the app with bundle id topic: the
// headers (token, topic, priority, push type) and the payload the Mattermost
// mobile apps expect (WIRE.md, "APNs request the apps expect"), already
// encoded as a json.RawMessage. n must have been through the policy and
// wire.(*Notification).Normalize. Build is pure and cheap; it does no I/O.
func Build(n *wire.Notification, topic string) *apns2.Notification {
	an := &apns2.Notification{
		DeviceToken: n.DeviceID,
		Topic:       topic,
		Priority:    apns2.PriorityHigh,
		PushType:    apns2.PushTypeAlert,
	}
	if n.Transport == wire.TransportVoIP {
		// VoIP: the app's PushKit topic, an empty aps, the ids only.
		an.Topic = topic + ".voip"
		an.PushType = apns2.PushTypeVOIP
	}
	an.Payload = json.RawMessage(appendPayload(make([]byte, 0, payloadSizeHint(n)), n))
	return an
}

// payloadSizeHint is a capacity that holds n's payload without growing.
func payloadSizeHint(n *wire.Notification) int {
	return 400 + 2*(len(n.Message)+len(n.ChannelName)) + len(n.Signature) + len(n.SenderName) +
		len(n.OverrideUsername) + len(n.OverrideIconURL) + len(n.RootID)
}

// appendPayload appends n's APNs payload to dst. Keys come out in sorted
// order, as encoding/json writes a map, so the bytes are those the old
// map-based payload made; empty optional keys are left out.
func appendPayload(dst []byte, n *wire.Notification) []byte {
	voip := n.Transport == wire.TransportVoIP
	idLoaded := !voip && n.IsIDLoaded
	content := !voip && !idLoaded && (n.Type == wire.TypeMessage || n.Type == wire.TypeSession)

	o := jsonobject.Open(dst)
	o.Optional("ack_id", n.AckID)
	aps := o.Object("aps")
	if !voip { // VoIP: an empty aps
		appendAPS(&aps, n, idLoaded, content)
	}
	o.End(aps)
	o.Optional("channel_id", n.ChannelID)
	if content {
		o.Optional("channel_name", n.ChannelName)
	}
	o.Optional("from_webhook", n.FromWebhook)
	if idLoaded {
		o.Bool("id_loaded", true)
	}
	o.Bool("is_crt_enabled", n.IsCRTEnabled)
	o.Optional("override_icon_url", n.OverrideIconURL)
	o.Optional("override_username", n.OverrideUsername)
	o.Optional("post_id", n.PostID)
	o.Optional("root_id", n.RootID)
	o.Optional("sender_id", n.SenderID)
	o.Optional("sender_name", n.SenderName)
	o.String("server_id", n.ServerID)
	o.String("signature", n.Signature)
	o.String("sub_type", n.SubType)
	o.Optional("team_id", n.TeamID)
	o.String("type", n.Type)
	if idLoaded || content {
		o.String("version", n.Version)
	}
	return o.Close()
}

// appendAPS appends the members of the aps dictionary of a notification
// that is not VoIP.
func appendAPS(o *jsonobject.Object, n *wire.Notification, idLoaded, content bool) {
	switch {
	case idLoaded:
		o.String("alert", n.Message) // the policy's generic text
	case content:
		msg := expandEmoji(n.Message)
		if n.Version == "v2" && n.ChannelName != "" {
			alert := o.Object("alert")
			alert.Optional("body", msg)
			alert.Optional("title", n.ChannelName)
			o.End(alert)
		} else {
			o.String("alert", msg)
		}
	}
	if n.Badge != wire.BadgeUnchanged {
		badge := n.Badge
		if n.Type == wire.TypeClear && badge == 0 && n.AppVersion > 1 {
			badge = 1
		}
		o.Int("badge", int64(badge))
	}
	if idLoaded || content {
		o.Optional("category", n.Category)
	}
	if idLoaded || (content && n.Type == wire.TypeMessage) || n.Type == wire.TypeClear || n.Type == wire.TypeTest {
		o.Int("content-available", 1)
	}
	if idLoaded || content {
		o.Int("mutable-content", 1)
		o.String("sound", soundDefault)
	}
	// update_badge: the badge alone.
	if n.IsCRTEnabled && n.RootID != "" {
		o.String("thread-id", n.RootID)
	} else {
		o.Optional("thread-id", n.ChannelID)
	}
}

// expandEmoji turns shortcodes (":tada:") into emoji, as Mattermost's push
// proxy does. Text without a colon is returned as is, at no cost.
func expandEmoji(s string) string {
	if strings.IndexByte(s, ':') < 0 {
		return s
	}
	return emoji.Sprint(s)
}
