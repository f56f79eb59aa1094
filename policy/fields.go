package policy

import (
	"strings"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// Field names a droppable notification field by its JSON name.
type Field uint8

// The fields a policy may remove. signature, ack_id, server_id, device_id,
// type and badge always pass; platform and transport route the notification.
const (
	FieldMessage Field = iota
	FieldChannelName
	FieldSenderName
	FieldOverrideUsername
	FieldOverrideIconURL
	FieldPostID
	FieldCategory
	FieldSound
	FieldContentAvailable
	FieldTeamID
	FieldChannelID
	FieldRootID
	FieldSubType
	FieldSenderID
	FieldFromWebhook
	FieldVersion
	FieldIsCRTEnabled
	numFields
)

var fieldNames = [numFields]string{
	FieldMessage:          "message",
	FieldChannelName:      "channel_name",
	FieldSenderName:       "sender_name",
	FieldOverrideUsername: "override_username",
	FieldOverrideIconURL:  "override_icon_url",
	FieldPostID:           "post_id",
	FieldCategory:         "category",
	FieldSound:            "sound",
	FieldContentAvailable: "cont_ava",
	FieldTeamID:           "team_id",
	FieldChannelID:        "channel_id",
	FieldRootID:           "root_id",
	FieldSubType:          "sub_type",
	FieldSenderID:         "sender_id",
	FieldFromWebhook:      "from_webhook",
	FieldVersion:          "version",
	FieldIsCRTEnabled:     "is_crt_enabled",
}

// alwaysPass are the fields no policy may remove: the app needs them to
// verify and route the notification.
var alwaysPass = []string{"signature", "ack_id", "server_id", "device_id", "type", "badge", "platform", "transport", "is_id_loaded"}

// String returns the field's JSON name.
func (f Field) String() string { return fieldNames[f] }

// Fields returns every field a policy may remove, in a fixed order.
func Fields() []Field {
	out := make([]Field, numFields)
	for i := range out {
		out[i] = Field(i)
	}
	return out
}

// ParseField returns the field with the given JSON name.
func ParseField(name string) (Field, bool) {
	for i, n := range fieldNames {
		if n == name {
			return Field(i), true
		}
	}
	return 0, false
}

// FieldSet is a set of fields. The zero value is empty.
type FieldSet uint32

// Has reports whether f is in s.
func (s FieldSet) Has(f Field) bool { return s&(1<<f) != 0 }

// With returns s with f added.
func (s FieldSet) With(f Field) FieldSet { return s | 1<<f }

// Len returns the number of fields in s.
func (s FieldSet) Len() int {
	n := 0
	for ; s != 0; s &= s - 1 {
		n++
	}
	return n
}

// Fields lists the fields in s in a fixed order.
func (s FieldSet) Fields() []Field {
	var out []Field
	for f := Field(0); f < numFields; f++ {
		if s.Has(f) {
			out = append(out, f)
		}
	}
	return out
}

// String lists the fields' JSON names, comma-separated.
func (s FieldSet) String() string {
	names := make([]string, 0, s.Len())
	for _, f := range s.Fields() {
		names = append(names, f.String())
	}
	return strings.Join(names, ",")
}

// clear empties f in n and reports whether it held a value. message is not
// handled here: it is replaced by the generic text, never left empty.
func clear(n *wire.Notification, f Field) bool {
	var had bool
	str := func(p *string) {
		had = *p != ""
		*p = ""
	}
	switch f {
	case FieldChannelName:
		str(&n.ChannelName)
	case FieldSenderName:
		str(&n.SenderName)
	case FieldOverrideUsername:
		str(&n.OverrideUsername)
	case FieldOverrideIconURL:
		str(&n.OverrideIconURL)
	case FieldPostID:
		str(&n.PostID)
	case FieldCategory:
		str(&n.Category)
	case FieldSound:
		str(&n.Sound)
	case FieldContentAvailable:
		had = n.ContentAvailable != 0
		n.ContentAvailable = 0
	case FieldTeamID:
		str(&n.TeamID)
	case FieldChannelID:
		str(&n.ChannelID)
	case FieldRootID:
		str(&n.RootID)
	case FieldSubType:
		str(&n.SubType)
	case FieldSenderID:
		str(&n.SenderID)
	case FieldFromWebhook:
		str(&n.FromWebhook)
	case FieldVersion:
		str(&n.Version)
	case FieldIsCRTEnabled:
		had = n.IsCRTEnabled
		n.IsCRTEnabled = false
	}
	return had
}
