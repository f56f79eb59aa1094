package apns

import (
	"encoding/json"
	"slices"
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
	an.Payload = json.RawMessage(encodePayload(n))
	return an
}

// The members of a payload at their largest, without the values of their
// strings, for payloadSizeHint: those of every payload (with the longest
// badge), and those only a message's payload has, content or id-loaded
// (alert is an object or a string), each member with a comma.
const (
	payloadMembers = `{"ack_id":"","aps":{"badge":-9223372036854775808,"content-available":1,"thread-id":""},` +
		`"channel_id":"","from_webhook":"","is_crt_enabled":false,"override_icon_url":"",` +
		`"override_username":"","post_id":"","root_id":"","sender_id":"","sender_name":"",` +
		`"server_id":"","signature":"","sub_type":"","team_id":"","type":""}`
	messageMembers = `"alert":{"body":"","title":""},"category":"","mutable-content":1,"sound":"default",` +
		`"channel_name":"","id_loaded":true,"version":"",`
)

// payloadSizeHint is a capacity that holds n's payload, whose alert is
// alert, without growing, unless its strings need escaping: the members n's
// payload may have and their values. It overcounts by little (thread-id
// counts the channel and the root), so that a clear payload, say, does not
// get a message's buffer.
func payloadSizeHint(n *wire.Notification, alert string) int {
	size := len(payloadMembers) + len(n.AckID) + 2*len(n.ChannelID) + 2*len(n.RootID) + len(n.FromWebhook) +
		len(n.OverrideIconURL) + len(n.OverrideUsername) + len(n.PostID) + len(n.SenderID) +
		len(n.SenderName) + len(n.ServerID) + len(n.Signature) + len(n.SubType) + len(n.TeamID) + len(n.Type)
	if _, idLoaded, content := payloadKind(n); idLoaded || content {
		size += len(messageMembers) + len(alert) + 2*len(n.ChannelName) + len(n.Category) + len(n.Version)
	}
	return size
}

// payloadKind tells which payload n gets: VoIP (the ids only), id-loaded
// (the policy's generic text), or content (the message, its shortcodes
// expanded); none of them for clear, update_badge and test.
func payloadKind(n *wire.Notification) (voip, idLoaded, content bool) {
	voip = n.Transport == wire.TransportVoIP
	idLoaded = !voip && n.IsIDLoaded
	content = !voip && !idLoaded && (n.Type == wire.TypeMessage || n.Type == wire.TypeSession)
	return voip, idLoaded, content
}

// encodePayload returns n's APNs payload in a buffer sized for it.
func encodePayload(n *wire.Notification) []byte { return appendPayloadOf(nil, n) }

// appendPayloadOf appends n's APNs payload to dst, grown once to hold it.
// The alert is made first (a message's shortcodes expanded), for its
// length.
func appendPayloadOf(dst []byte, n *wire.Notification) []byte {
	var alert string
	switch _, idLoaded, content := payloadKind(n); {
	case idLoaded:
		alert = n.Message // the policy's generic text
	case content:
		alert = expandEmoji(n.Message)
	}
	return appendPayload(slices.Grow(dst, payloadSizeHint(n, alert)), n, alert)
}

// appendPayload appends n's APNs payload, with alert as the text of its
// alert, to dst. Keys come out in sorted order, as encoding/json writes a
// map, so the bytes are those the old map-based payload made; empty
// optional keys are left out.
func appendPayload(dst []byte, n *wire.Notification, alert string) []byte {
	voip, idLoaded, content := payloadKind(n)

	o := jsonobject.Open(dst)
	o.Optional("ack_id", n.AckID)
	aps := o.Object("aps")
	if !voip { // VoIP: an empty aps
		appendAPS(&aps, n, alert, idLoaded, content)
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
func appendAPS(o *jsonobject.Object, n *wire.Notification, alert string, idLoaded, content bool) {
	switch {
	case idLoaded:
		o.String("alert", alert)
	case content:
		if n.Version == "v2" && n.ChannelName != "" {
			a := o.Object("alert")
			a.Optional("body", alert)
			a.Optional("title", n.ChannelName)
			o.End(a)
		} else {
			o.String("alert", alert)
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
