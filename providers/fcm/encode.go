package fcm

import (
	"errors"
	"strconv"
	"time"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushrelay/pushrelay/providers/jsonobject"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// Encode returns the request body Send posts for n, for an attempt without
// an expiry: Build(n) as FCM HTTP v1's send request, {"message":{...}},
// encoded once, straight into a buffer sized for it. It is what Send does
// before the network (Send adds android.ttl from the attempt).
func Encode(n *wire.Notification) ([]byte, error) { return encode(n, nil) }

// encode returns the request body for n, with ttl as android.ttl if not nil.
func encode(n *wire.Notification, ttl *time.Duration) ([]byte, error) {
	m := Build(n)
	m.Android.TTL = ttl
	return appendRequest(make([]byte, 0, requestSizeHint(n)), m)
}

// appendRequest appends the body of FCM HTTP v1's messages:send for m,
// {"message":{...}}, to dst: the JSON value the firebase SDK's json.Marshal
// of its send request makes, written in one pass without reflection. The
// data map's keys come out in the map's order, not sorted (JSON objects are
// unordered; FCM does not care). It encodes exactly the fields Build and
// Send set (token, data, android.priority, android.ttl) and returns an
// error, writing nothing, for any other field or for a message the SDK
// would refuse to send, so that a change to Build cannot be dropped
// silently on the wire.
// The errors name fields, never values.
func appendRequest(dst []byte, m *messaging.Message) ([]byte, error) {
	if err := encodable(m); err != nil {
		return dst, err
	}
	o := jsonobject.Open(dst)
	msg := o.Object("message")
	// The SDK's order: data, android, token.
	if len(m.Data) > 0 {
		d := msg.Object("data")
		for k, v := range m.Data {
			d.Pair(k, v)
		}
		msg.End(d)
	}
	if a := m.Android; a != nil {
		android := msg.Object("android")
		if a.TTL != nil {
			var ttl [32]byte
			android.Raw("ttl", appendTTL(ttl[:0], *a.TTL))
		}
		android.Optional("priority", a.Priority)
		msg.End(android)
	}
	msg.String("token", m.Token)
	o.End(msg)
	return o.Close(), nil
}

// requestSizeHint is a capacity that holds the request for Build(n) without
// growing, unless its strings need escaping: the names of every data key
// Build may set, the envelope and the values, without going over the map.
func requestSizeHint(n *wire.Notification) int {
	// {"message":{"data":{...},"android":{"ttl":"<seconds>s","priority":"high"},"token":""}},
	// 21 data keys with their quotes, colons and commas, "false", "Someone"
	// and a badge.
	const fixed = 448
	return fixed + len(n.DeviceID) + len(n.AckID) + len(n.Type) + len(n.SubType) + len(n.Version) +
		len(n.ChannelID) + len(n.ServerID) + len(n.Category) + len(n.Signature) + len(n.RootID) +
		len(n.PostID) + len(n.Message) + len(n.SenderID) + len(n.SenderName) + len(n.TeamID) +
		len(n.ChannelName) + len(n.OverrideUsername) + len(n.OverrideIconURL) + len(n.FromWebhook)
}

// encodable reports why appendRequest cannot encode m, if it cannot: a
// field it does not write is set, or the SDK would refuse the message.
func encodable(m *messaging.Message) error {
	switch {
	case m == nil:
		return errors.New("no message")
	case m.Topic != "":
		return errUnsupported("message.topic")
	case m.Condition != "":
		return errUnsupported("message.condition")
	case m.Notification != nil:
		return errUnsupported("message.notification")
	case m.Webpush != nil:
		return errUnsupported("message.webpush")
	case m.APNS != nil:
		return errUnsupported("message.apns")
	case m.FCMOptions != nil:
		return errUnsupported("message.fcm_options")
	case m.Token == "":
		return errors.New("no device token (message.token)")
	}
	a := m.Android
	if a == nil {
		return nil
	}
	switch {
	case a.CollapseKey != "":
		return errUnsupported("message.android.collapse_key")
	case a.RestrictedPackageName != "":
		return errUnsupported("message.android.restricted_package_name")
	case len(a.Data) > 0:
		return errUnsupported("message.android.data")
	case a.Notification != nil:
		return errUnsupported("message.android.notification")
	case a.FCMOptions != nil:
		return errUnsupported("message.android.fcm_options")
	case a.DirectBootOK:
		return errUnsupported("message.android.direct_boot_ok")
	case a.Priority != "" && a.Priority != "normal" && a.Priority != "high":
		return errors.New("message.android.priority must be normal or high")
	case a.TTL != nil && *a.TTL < 0:
		return errors.New("message.android.ttl must not be negative")
	}
	return nil
}

func errUnsupported(field string) error {
	return errors.New(field + " is set, but the encoder does not write it")
}

// appendTTL appends d as the SDK writes a duration (google.protobuf.Duration
// in JSON): whole seconds as "3600s", else with nine fractional digits,
// "1.500000000s".
func appendTTL(dst []byte, d time.Duration) []byte {
	secs := d / time.Second
	nanos := d - secs*time.Second
	dst = append(dst, '"')
	dst = strconv.AppendInt(dst, int64(secs), 10)
	if nanos > 0 {
		var frac [9]byte
		for i := len(frac) - 1; i >= 0; i-- {
			frac[i] = byte('0' + nanos%10)
			nanos /= 10
		}
		dst = append(dst, '.')
		dst = append(dst, frac[:]...)
	}
	return append(dst, 's', '"')
}
