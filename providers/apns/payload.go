package apns

import (
	"strings"

	"github.com/kyokomi/emoji/v2"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// soundDefault is the sound of message, session and id-loaded pushes.
const soundDefault = "default"

// Build returns what Send posts for n to the app with bundle id topic: the
// headers (token, topic, priority, push type) and the payload the Mattermost
// mobile apps expect (WIRE.md, "APNs request the apps expect"). n must have
// been through the policy and wire.(*Notification).Normalize. Build is pure
// and cheap; it does no I/O.
func Build(n *wire.Notification, topic string) *apns2.Notification {
	p := payload.NewPayload()
	an := &apns2.Notification{
		DeviceToken: n.DeviceID,
		Topic:       topic,
		Priority:    apns2.PriorityHigh,
		PushType:    apns2.PushTypeAlert,
		Payload:     p,
	}
	if n.Transport == wire.TransportVoIP {
		// VoIP: the app's PushKit topic, an empty aps, the ids only.
		an.Topic = topic + ".voip"
		an.PushType = apns2.PushTypeVOIP
		customKeys(p, n)
		return an
	}

	if n.Badge != wire.BadgeUnchanged {
		badge := n.Badge
		if n.Type == wire.TypeClear && badge == 0 && n.AppVersion > 1 {
			badge = 1
		}
		p.Badge(badge)
	}

	switch {
	case n.IsIDLoaded:
		p.Category(n.Category).Sound(soundDefault).MutableContent().ContentAvailable()
		p.Custom("version", n.Version)
		p.Custom("id_loaded", true)
		p.Alert(n.Message) // the policy's generic text
	case n.Type == wire.TypeMessage || n.Type == wire.TypeSession:
		p.Category(n.Category).Sound(soundDefault).MutableContent()
		p.Custom("version", n.Version)
		if n.Type == wire.TypeMessage {
			p.ContentAvailable()
		}
		msg := expandEmoji(n.Message)
		if n.Version == "v2" && n.ChannelName != "" {
			p.AlertTitle(n.ChannelName).AlertBody(msg)
		} else {
			p.Alert(msg)
		}
		if n.ChannelName != "" {
			p.Custom("channel_name", n.ChannelName)
		}
	case n.Type == wire.TypeClear || n.Type == wire.TypeTest:
		p.ContentAvailable()
	}
	// update_badge: the badge alone.

	if n.IsCRTEnabled && n.RootID != "" {
		p.ThreadID(n.RootID)
	} else if n.ChannelID != "" {
		p.ThreadID(n.ChannelID)
	}
	customKeys(p, n)
	return an
}

// customKeys sets the keys outside aps that the apps read.
func customKeys(p *payload.Payload, n *wire.Notification) {
	p.Custom("type", n.Type)
	p.Custom("sub_type", n.SubType)
	p.Custom("server_id", n.ServerID)
	p.Custom("is_crt_enabled", n.IsCRTEnabled)
	p.Custom("signature", n.Signature)
	optional(p, "ack_id", n.AckID)
	optional(p, "channel_id", n.ChannelID)
	optional(p, "team_id", n.TeamID)
	optional(p, "sender_id", n.SenderID)
	optional(p, "sender_name", n.SenderName)
	optional(p, "post_id", n.PostID)
	optional(p, "root_id", n.RootID)
	optional(p, "override_username", n.OverrideUsername)
	optional(p, "override_icon_url", n.OverrideIconURL)
	optional(p, "from_webhook", n.FromWebhook)
}

func optional(p *payload.Payload, key, value string) {
	if value != "" {
		p.Custom(key, value)
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
