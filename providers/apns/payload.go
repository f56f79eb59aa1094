package apns

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"

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

// payloadSizeHint is a capacity that holds n's payload without growing,
// unless its strings need escaping: the members n's payload may have and
// their values, the alert with its shortcodes expanded. It overcounts by
// little (thread-id counts the channel and the root), so that a clear
// payload, say, does not get a message's buffer.
func payloadSizeHint(n *wire.Notification) int {
	size := len(payloadMembers) + len(n.AckID) + 2*len(n.ChannelID) + 2*len(n.RootID) + len(n.FromWebhook) +
		len(n.OverrideIconURL) + len(n.OverrideUsername) + len(n.PostID) + len(n.SenderID) +
		len(n.SenderName) + len(n.ServerID) + len(n.Signature) + len(n.SubType) + len(n.TeamID) + len(n.Type)
	switch _, idLoaded, content := payloadKind(n); {
	case idLoaded:
		size += len(messageMembers) + len(n.Message) + len(n.Category) + len(n.Version)
	case content:
		size += len(messageMembers) + expandedLen(n.Message) + 2*len(n.ChannelName) + len(n.Category) + len(n.Version)
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

// appendPayload appends n's APNs payload to dst. Keys come out in sorted
// order, as encoding/json writes a map, so the bytes are those the old
// map-based payload made; empty optional keys are left out.
func appendPayload(dst []byte, n *wire.Notification) []byte {
	voip, idLoaded, content := payloadKind(n)

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
// proxy does with emoji.Sprint, whose output it matches once quoted as JSON
// (emoji.Sprint also turns invalid UTF-8 into U+FFFD, which the quoting
// does anyway). Text without a shortcode is returned as is, at no cost;
// with one, the expanded text is the only allocation (emoji.Sprint makes a
// dozen, through fmt and bytes.Buffers).
func expandEmoji(s string) string {
	start, end, e1, e2, ok := nextShortcode(s, 0)
	if !ok {
		return s
	}
	var b strings.Builder
	b.Grow(expandedLen(s))
	last := 0
	for ; ok; start, end, e1, e2, ok = nextShortcode(s, end) {
		b.WriteString(s[last:start])
		b.WriteString(e1)
		b.WriteString(e2)
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// expandedLen is len(expandEmoji(s)), without the expansion.
func expandedLen(s string) int {
	n := len(s)
	for start, end, e1, e2, ok := nextShortcode(s, 0); ok; start, end, e1, e2, ok = nextShortcode(s, end) {
		n += len(e1) + len(e2) - (end - start)
	}
	return n
}

// nextShortcode finds the first shortcode of s[from:] that emoji.Sprint
// expands, s[start:end], and its expansion e1+e2. It reads s as the
// library does: a candidate runs from a colon to the next colon, both
// included, unless a space comes first (then it is text) or the colon
// follows at once (then the first colon is text and the candidate starts
// at the second); the closing colon of a candidate that does not expand
// starts no other. A colon is ASCII, never part of a UTF-8 sequence, so
// the library's rune-by-rune reading finds the same colons even in invalid
// UTF-8; the fuzz test holds the two to the same output.
func nextShortcode(s string, from int) (start, end int, e1, e2 string, ok bool) {
	for i := from; ; i = end {
		c := strings.IndexByte(s[i:], ':')
		if c < 0 {
			return 0, 0, "", "", false
		}
		start = i + c
		end = start + 1
	candidate:
		for end < len(s) {
			r, size := utf8.DecodeRuneInString(s[end:])
			end += size
			switch {
			case r == ':' && end == start+2: // "::"
				start = end - 1
			case r == ':':
				if e1, e2, ok = expansion(s[start:end]); ok {
					return start, end, e1, e2, true
				}
				break candidate
			case unicode.IsSpace(r):
				break candidate
			}
		}
	}
}

// expansion returns what emoji.Emojize makes of the candidate code, when it
// is a shortcode: the emoji and emoji.ReplacePadding for a code of
// emoji.CodeMap, else the two regional indicators of :flag-xx:, xx two
// lowercase letters (the library's regular expression, which can only
// match the whole of a candidate: it has no colon inside).
func expansion(code string) (e1, e2 string, ok bool) {
	if e, found := emoji.CodeMap()[code]; found {
		return e, emoji.ReplacePadding, true
	}
	const prefix = ":flag-"
	if len(code) == len(prefix)+3 && strings.HasPrefix(code, prefix) && isLower(code[6]) && isLower(code[7]) {
		return regionalIndicator(code[6]), regionalIndicator(code[7]), true
	}
	return "", "", false
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }

// regionalIndicators are the letters of flags, U+1F1E6 to U+1F1FF for a to
// z, four bytes each: a flag's emoji are substrings, not new strings.
var regionalIndicators = func() string {
	var b strings.Builder
	for r := rune(0x1F1E6); r <= 0x1F1FF; r++ {
		b.WriteRune(r)
	}
	return b.String()
}()

// regionalIndicator returns the regional indicator of the letter c, a to z.
func regionalIndicator(c byte) string {
	i := 4 * int(c-'a')
	return regionalIndicators[i : i+4]
}
