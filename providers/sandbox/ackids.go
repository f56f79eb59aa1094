package sandbox

import (
	"maps"
	"sync/atomic"

	"github.com/go-json-experiment/json/jsontext"
)

// ackTable counts a look-alike's deliveries by ack_id while it is asked
// to: the count alone cannot tell a notification delivered twice and
// another never delivered from two delivered once.
type ackTable struct {
	on     atomic.Bool    // read without the look-alike's lock
	counts map[string]int // guarded by the look-alike's mu; nil when off
}

// set turns counting on, with an empty table, or off, dropping the table.
// The caller holds the look-alike's lock.
func (t *ackTable) set(on bool) {
	t.on.Store(on)
	t.counts = nil
	if on {
		t.counts = map[string]int{}
	}
}

// reset empties the table, if any. The caller holds the look-alike's lock.
func (t *ackTable) reset() {
	if t.counts != nil {
		t.counts = map[string]int{}
	}
}

// add counts a delivery of id, when counting. The caller holds the
// look-alike's lock.
func (t *ackTable) add(id string) {
	if t.counts != nil {
		t.counts[id]++
	}
}

// snapshot copies the table (nil when off). The caller holds the
// look-alike's lock.
func (t *ackTable) snapshot() map[string]int { return maps.Clone(t.counts) }

// apnsAckID returns the top-level "ack_id" string of an APNs payload, as
// the relay's APNs provider sends it, or "".
func apnsAckID(body []byte) string {
	d := getBodyDecoder(body)
	defer putBodyDecoder(d)
	var id string
	d.members(func(name jsontext.Value) bool {
		if isName(name, "ack_id") {
			id = stringValue(d)
			return false
		}
		return d.skip()
	})
	return id
}

// fcmAckID returns message.data.ack_id of an FCM send, as the relay's FCM
// provider sends it, or "".
func fcmAckID(body []byte) string {
	d := getBodyDecoder(body)
	defer putBodyDecoder(d)
	var id string
	// Each walk stops (returns false) at the ack_id, which ends the ones
	// around it too.
	data := func(name jsontext.Value) bool {
		if isName(name, "ack_id") {
			id = stringValue(d)
			return false
		}
		return d.skip()
	}
	message := func(name jsontext.Value) bool {
		if isName(name, "data") {
			return d.membersOrNull(data)
		}
		return d.skip()
	}
	d.members(func(name jsontext.Value) bool {
		if isName(name, "message") {
			return d.membersOrNull(message)
		}
		return d.skip()
	})
	return id
}

// stringValue reads the next value: the string it holds, or "" when it is
// not a string.
func stringValue(d *bodyDecoder) string {
	v, err := d.dec.ReadValue()
	if err != nil || v.Kind() != '"' {
		return ""
	}
	return unquote(v)
}
