package fcm

import (
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/pushrelay/pushrelay/providers/jsonobject"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// Encode returns the request body Send posts for n, for an attempt without
// an expiry: Build(n) as FCM HTTP v1's send request, {"message":{...}},
// encoded once, straight into a buffer sized for it. It is what Send does
// before the network (Send adds android.ttl from the attempt).
func Encode(n *wire.Notification) ([]byte, error) { return encode(n, nil, "") }

// encode returns the request body for n, with ttl as android.ttl if not
// nil and collapseKey as android.collapse_key if not empty: the JSON value
// the firebase SDK's json.Marshal of its send request makes for Build(n)
// with those set, written in one pass straight from n, without Build's
// map or reflection (the tests compare the two). The data members come out
// in eachData's order, not sorted (JSON objects are unordered; FCM does not
// care). It returns an error for a message the SDK would refuse to send;
// the errors name fields, never values.
func encode(n *wire.Notification, ttl *time.Duration, collapseKey string) ([]byte, error) {
	return appendRequest(nil, n, ttl, collapseKey)
}

// appendRequest appends encode's request body for n to dst, grown once to
// hold it.
func appendRequest(dst []byte, n *wire.Notification, ttl *time.Duration, collapseKey string) ([]byte, error) {
	switch {
	case n.DeviceID == "":
		return nil, errors.New("no device token (message.token)")
	case ttl != nil && *ttl < 0:
		return nil, errors.New("message.android.ttl must not be negative")
	}
	o := jsonobject.Open(slices.Grow(dst, requestSizeHint(n)+len(collapseKey)))
	msg := o.Object("message")
	// The SDK's order: data, android, token.
	data := msg.Object("data")
	eachData(n, func(k, v string) { data.String(k, v) }) // the names are constants: no escape
	msg.End(data)
	android := msg.Object("android")
	if ttl != nil {
		var buf [32]byte
		android.Raw("ttl", appendTTL(buf[:0], *ttl))
	}
	android.Optional("collapse_key", collapseKey)
	android.String("priority", androidPriority)
	msg.End(android)
	msg.String("token", n.DeviceID)
	o.End(msg)
	return o.Close(), nil
}

// requestSizeHint is a capacity that holds the request for n without
// growing, unless its strings need escaping: the envelope, the names of the
// data keys and the values, summed without a walk over the data.
func requestSizeHint(n *wire.Notification) int {
	// {"message":{"data":{...},"android":{"ttl":"<seconds>s","priority":"high"},"token":""}}
	// with the longest TTL and badge, "false", and the data keys of a
	// content message (20) or of an id-loaded one (17, with "true" and
	// "Someone") takes at most 424 bytes: 448 leaves some to spare.
	const fixed = 448
	return fixed + len(n.DeviceID) + len(n.AckID) + len(n.Type) + len(n.SubType) + len(n.Version) +
		len(n.ChannelID) + len(n.ServerID) + len(n.Category) + len(n.Signature) + len(n.RootID) +
		len(n.PostID) + len(n.Message) + len(n.SenderID) + len(n.SenderName) + len(n.TeamID) +
		len(n.ChannelName) + len(n.OverrideUsername) + len(n.OverrideIconURL) + len(n.FromWebhook)
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
