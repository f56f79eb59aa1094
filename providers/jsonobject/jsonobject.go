// Package jsonobject appends JSON objects to a byte slice, member by member,
// in the order the caller writes them: the providers encode their payloads
// with it once, straight from the notification, instead of building a map
// or a struct for encoding/json. Strings are quoted by jsontext.AppendQuote
// (the reference JSON v2 implementation): invalid UTF-8 comes out as
// U+FFFD, as encoding/json writes it.
package jsonobject

import (
	"strconv"

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
	o.b, _ = jsontext.AppendQuote(o.b, v) // the error only reports invalid UTF-8, replaced
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

// Pair appends the member k: v where the name is not a constant (a map
// key): both are quoted.
func (o *Object) Pair(k, v string) {
	o.comma()
	o.b, _ = jsontext.AppendQuote(o.b, k)
	o.b = append(o.b, ':')
	o.b, _ = jsontext.AppendQuote(o.b, v)
}

// Object starts the member k, an object; write its members, then End it.
// o must not be written to in between.
func (o *Object) Object(k string) Object {
	o.Key(k)
	return Open(o.b)
}

// End closes the member object child, started by o.Object.
func (o *Object) End(child Object) { o.b = child.Close() }
