// Package jsonobject appends JSON objects to a byte slice, member by member,
// in the order the caller writes them: the providers encode their payloads
// with it once, straight from the notification, instead of building a map
// or a struct for encoding/json. Strings come out as jsontext.AppendQuote
// (the reference JSON v2 implementation) quotes them: invalid UTF-8 as
// U+FFFD, as encoding/json writes it, and nothing else escaped but '"',
// '\\' and control characters.
//
// It imports nothing of ours.
package jsonobject

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Object is a JSON object being appended. Its zero value is not usable:
// start one with Open, or with (*Object).Object for a member.
type Object struct {
	b       []byte
	members int
}

// Open starts an object at the end of dst.
func Open(dst []byte) Object { return Object{b: append(dst, '{')} }

// Close ends the object and returns the extended buffer.
func (o *Object) Close() []byte { return append(o.b, '}') }

// Key appends a member's name, a constant of the caller's (it is not
// escaped); its value must follow.
func (o *Object) Key(k string) {
	o.comma()
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

func (o *Object) comma() {
	if o.members > 0 {
		o.b = append(o.b, ',')
	}
	o.members++
}

// String appends the member k: v.
func (o *Object) String(k, v string) {
	o.Key(k)
	o.b = appendQuote(o.b, v)
}

// Optional appends the member k: v only when v is not empty.
func (o *Object) Optional(k, v string) {
	if v != "" {
		o.String(k, v)
	}
}

// Bool appends the member k: v.
func (o *Object) Bool(k string, v bool) {
	o.Key(k)
	o.b = strconv.AppendBool(o.b, v)
}

// Int appends the member k: v.
func (o *Object) Int(k string, v int64) {
	o.Key(k)
	o.b = strconv.AppendInt(o.b, v, 10)
}

// Raw appends the member k with a value already encoded as JSON.
func (o *Object) Raw(k string, v []byte) {
	o.Key(k)
	o.b = append(o.b, v...)
}

// Object starts the member k, an object; write its members, then End it.
// o must not be written to in between.
func (o *Object) Object(k string) Object {
	o.Key(k)
	return Open(o.b)
}

// End closes the member object child, started by o.Object.
func (o *Object) End(child Object) { o.b = child.Close() }

// appendQuote appends s quoted, byte for byte as jsontext.AppendQuote
// does. Nearly every string the providers send (ids, tokens, most text)
// needs no escape, and checking that eight bytes at a time, then copying,
// takes about half the time of AppendQuote's byte-by-byte walk: only the
// other strings go through AppendQuote.
func appendQuote(dst []byte, s string) []byte {
	if !verbatim(s) {
		dst, _ = jsontext.AppendQuote(dst, s) // the error only reports invalid UTF-8, replaced
		return dst
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// verbatim reports whether jsontext.AppendQuote writes s as it is between
// its quotes: s is valid UTF-8 without '"', '\\' or a control character
// below U+0020. Without flags AppendQuote escapes nothing else: DEL (0x7F),
// '<', '>', '&', U+2028 and U+2029 go out as they are (the tests check
// this against AppendQuote).
func verbatim(s string) bool {
	// A word of eight bytes passes when its bytes are all ASCII (no high
	// bit in w) and none is below 0x20 (a borrow would set its high bit in
	// control), '"' or '\\' (a zero byte in quote or backslash, found the
	// same way). A borrow can only mark the bytes above one that matched,
	// so the test of a word is exact; the first word that fails, and the
	// last bytes, are looked at rune by rune.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := binary.LittleEndian.Uint64([]byte(s[i : i+8])) // one load, no copy
		quote, backslash := w^(ones*'"'), w^(ones*'\\')
		control := w - ones*' '
		if (w|control|(quote-ones)&^quote|(backslash-ones)&^backslash)&highs != 0 {
			break
		}
	}
	return verbatimRunes(s[i:])
}

// verbatimRunes is verbatim, rune by rune: it decodes UTF-8 as AppendQuote
// does, so a byte AppendQuote would replace with U+FFFD is not verbatim.
func verbatimRunes(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < ' ' || c == '"' || c == '\\' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return false
		}
		i += size
	}
	return true
}
