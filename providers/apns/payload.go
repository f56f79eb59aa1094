package apns

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/kyokomi/emoji/v2"
	"github.com/sideshow/apns2"

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

	o := object{b: dst}
	o.open()
	o.optional("ack_id", n.AckID)
	o.key("aps")
	if !voip {
		appendAPS(&o, n, idLoaded, content)
	} else {
		o.b = append(o.b, "{}"...)
	}
	o.optional("channel_id", n.ChannelID)
	if content {
		o.optional("channel_name", n.ChannelName)
	}
	o.optional("from_webhook", n.FromWebhook)
	if idLoaded {
		o.bool("id_loaded", true)
	}
	o.bool("is_crt_enabled", n.IsCRTEnabled)
	o.optional("override_icon_url", n.OverrideIconURL)
	o.optional("override_username", n.OverrideUsername)
	o.optional("post_id", n.PostID)
	o.optional("root_id", n.RootID)
	o.optional("sender_id", n.SenderID)
	o.optional("sender_name", n.SenderName)
	o.string("server_id", n.ServerID)
	o.string("signature", n.Signature)
	o.string("sub_type", n.SubType)
	o.optional("team_id", n.TeamID)
	o.string("type", n.Type)
	if idLoaded || content {
		o.string("version", n.Version)
	}
	return o.close()
}

// appendAPS appends the aps dictionary of a notification that is not VoIP.
func appendAPS(parent *object, n *wire.Notification, idLoaded, content bool) {
	o := object{b: parent.b}
	o.open()
	switch {
	case idLoaded:
		o.string("alert", n.Message) // the policy's generic text
	case content:
		msg := expandEmoji(n.Message)
		if n.Version == "v2" && n.ChannelName != "" {
			o.key("alert")
			a := object{b: o.b}
			a.open()
			a.optional("body", msg)
			a.optional("title", n.ChannelName)
			o.b = a.close()
		} else {
			o.string("alert", msg)
		}
	}
	if n.Badge != wire.BadgeUnchanged {
		badge := n.Badge
		if n.Type == wire.TypeClear && badge == 0 && n.AppVersion > 1 {
			badge = 1
		}
		o.key("badge")
		o.b = strconv.AppendInt(o.b, int64(badge), 10)
	}
	if idLoaded || content {
		o.optional("category", n.Category)
	}
	if idLoaded || (content && n.Type == wire.TypeMessage) || n.Type == wire.TypeClear || n.Type == wire.TypeTest {
		o.key("content-available")
		o.b = append(o.b, '1')
	}
	if idLoaded || content {
		o.key("mutable-content")
		o.b = append(o.b, '1')
		o.string("sound", soundDefault)
	}
	// update_badge: the badge alone.
	if n.IsCRTEnabled && n.RootID != "" {
		o.string("thread-id", n.RootID)
	} else {
		o.optional("thread-id", n.ChannelID)
	}
	parent.b = o.close()
}

// object appends one JSON object, member by member; the caller writes the
// keys in the order they should appear.
type object struct {
	b     []byte
	count int
}

func (o *object) open() { o.b = append(o.b, '{') }

func (o *object) close() []byte { return append(o.b, '}') }

// key appends a member's name (a constant of ours: no escaping needed).
func (o *object) key(k string) {
	if o.count > 0 {
		o.b = append(o.b, ',')
	}
	o.count++
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

func (o *object) string(k, v string) {
	o.key(k)
	// Invalid UTF-8 comes out as U+FFFD, as encoding/json writes it; the
	// error only reports that.
	o.b, _ = jsontext.AppendQuote(o.b, v)
}

// optional appends k only when v is not empty.
func (o *object) optional(k, v string) {
	if v != "" {
		o.string(k, v)
	}
}

func (o *object) bool(k string, v bool) {
	o.key(k)
	o.b = strconv.AppendBool(o.b, v)
}

// expandEmoji turns shortcodes (":tada:") into emoji, as Mattermost's push
// proxy does. Text without a colon is returned as is, at no cost.
func expandEmoji(s string) string {
	if strings.IndexByte(s, ':') < 0 {
		return s
	}
	return emoji.Sprint(s)
}
