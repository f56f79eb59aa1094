package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// UnmarshalJSON decodes a send_push body exactly as encoding/json decodes it
// into the struct: names matched by their json tag, else case-insensitively;
// unknown names ignored; null leaves a field alone; the last of duplicate
// names wins; a value of the wrong type is a *json.UnmarshalTypeError naming
// the field; anything after the first JSON value is ignored, as
// json.Decoder does. It is faster and makes one allocation for all the
// strings: they are slices of one copy of data, unless they hold escapes or
// invalid UTF-8 (then encoding/json decodes that value).
func (n *Notification) UnmarshalJSON(data []byte) error {
	d := decoders.Get().(*decoder)
	defer d.release()
	d.in = *bytes.NewBuffer(data)
	d.dec.Reset(&d.in, decodeOptions...)
	switch d.dec.PeekKind() {
	case 'n':
		_, err := d.dec.ReadToken()
		return err
	case '{':
	default:
		v, err := d.dec.ReadValue()
		if err != nil {
			return err
		}
		return typeError("", v, reflect.TypeFor[Notification]())
	}
	if _, err := d.dec.ReadToken(); err != nil {
		return err
	}
	var body string // a copy of data, made at the first string worth keeping
	for d.dec.PeekKind() != '}' {
		name, err := d.dec.ReadValue() // a name, or the error in its place
		if err != nil {
			return err
		}
		f := lookup(name)
		v, err := d.dec.ReadValue()
		if err != nil {
			return err
		}
		if f == nil || v.Kind() == 'n' {
			continue
		}
		switch {
		case f.str != nil:
			if v.Kind() != '"' {
				return typeError(f.name, v, reflect.TypeFor[string]())
			}
			if body == "" {
				body = string(data)
			}
			*f.str(n) = d.text(body, v)
		case f.num != nil:
			if v.Kind() != '0' {
				return typeError(f.name, v, reflect.TypeFor[int]())
			}
			i, err := strconv.ParseInt(string(v), 10, 0)
			if err != nil {
				return typeError(f.name, v, reflect.TypeFor[int]())
			}
			*f.num(n) = int(i)
		case f.flag != nil:
			if v.Kind() != 't' && v.Kind() != 'f' {
				return typeError(f.name, v, reflect.TypeFor[bool]())
			}
			*f.flag(n) = v.Kind() == 't'
		}
	}
	_, err := d.dec.ReadToken()
	return err
}

// decodeOptions make jsontext as lenient as encoding/json: duplicate names
// and invalid UTF-8 pass (the latter decoded by encoding/json, see text).
var decodeOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

// decoder is a reusable jsontext.Decoder with its input: a bytes.Buffer,
// which jsontext parses in place.
type decoder struct {
	dec *jsontext.Decoder
	in  bytes.Buffer
}

var decoders = sync.Pool{New: func() any {
	d := new(decoder)
	d.dec = jsontext.NewDecoder(&d.in)
	return d
}}

func (d *decoder) release() {
	d.in = bytes.Buffer{}
	d.dec.Reset(&d.in, decodeOptions...)
	decoders.Put(d)
}

// text returns the string value v, just read: a slice of body (the
// decoder's whole input) when v holds no escape and is valid UTF-8, else
// what encoding/json makes of it.
func (d *decoder) text(body string, v jsontext.Value) string {
	if bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
		end := int(d.dec.InputOffset())
		return body[end-len(v)+1 : end-1]
	}
	var s string
	json.Unmarshal(v, &s) // v is a valid string literal: it cannot fail
	return s
}

func typeError(field string, v jsontext.Value, t reflect.Type) error {
	what := map[jsontext.Kind]string{'"': "string", '0': "number", 't': "bool", 'f': "bool", '{': "object", '[': "array"}[v.Kind()]
	if v.Kind() == '0' && t.Kind() == reflect.Int {
		// A number that is no int (1.5, 1e3) says which; into a string
		// field (a device_id, say) it stays unquoted.
		what = "number " + string(v)
	}
	e := &json.UnmarshalTypeError{Value: what, Type: t, Field: field}
	if field != "" {
		e.Struct = "Notification"
	}
	return e
}

// field is one decodable member of Notification.
type field struct {
	name string
	str  func(*Notification) *string
	num  func(*Notification) *int
	flag func(*Notification) *bool
}

// fields lists Notification's members by json tag name.
var fields = map[string]*field{}

func init() {
	for _, f := range []*field{
		{name: "ack_id", str: func(n *Notification) *string { return &n.AckID }},
		{name: "platform", str: func(n *Notification) *string { return &n.Platform }},
		{name: "server_id", str: func(n *Notification) *string { return &n.ServerID }},
		{name: "device_id", str: func(n *Notification) *string { return &n.DeviceID }},
		{name: "post_id", str: func(n *Notification) *string { return &n.PostID }},
		{name: "category", str: func(n *Notification) *string { return &n.Category }},
		{name: "sound", str: func(n *Notification) *string { return &n.Sound }},
		{name: "message", str: func(n *Notification) *string { return &n.Message }},
		{name: "badge", num: func(n *Notification) *int { return &n.Badge }},
		{name: "cont_ava", num: func(n *Notification) *int { return &n.ContentAvailable }},
		{name: "team_id", str: func(n *Notification) *string { return &n.TeamID }},
		{name: "channel_id", str: func(n *Notification) *string { return &n.ChannelID }},
		{name: "root_id", str: func(n *Notification) *string { return &n.RootID }},
		{name: "channel_name", str: func(n *Notification) *string { return &n.ChannelName }},
		{name: "type", str: func(n *Notification) *string { return &n.Type }},
		{name: "sub_type", str: func(n *Notification) *string { return &n.SubType }},
		{name: "transport", str: func(n *Notification) *string { return &n.Transport }},
		{name: "sender_id", str: func(n *Notification) *string { return &n.SenderID }},
		{name: "sender_name", str: func(n *Notification) *string { return &n.SenderName }},
		{name: "override_username", str: func(n *Notification) *string { return &n.OverrideUsername }},
		{name: "override_icon_url", str: func(n *Notification) *string { return &n.OverrideIconURL }},
		{name: "from_webhook", str: func(n *Notification) *string { return &n.FromWebhook }},
		{name: "version", str: func(n *Notification) *string { return &n.Version }},
		{name: "is_crt_enabled", flag: func(n *Notification) *bool { return &n.IsCRTEnabled }},
		{name: "is_id_loaded", flag: func(n *Notification) *bool { return &n.IsIDLoaded }},
		{name: "signature", str: func(n *Notification) *string { return &n.Signature }},
	} {
		fields[f.name] = f
	}
}

// lookup finds the field a quoted name stands for, as encoding/json does:
// the exact tag name first, else one equal under Unicode case folding.
func lookup(quoted jsontext.Value) *field {
	raw := quoted[1 : len(quoted)-1]
	if f, ok := fields[string(raw)]; ok {
		return f
	}
	name := string(raw)
	if bytes.IndexByte(raw, '\\') >= 0 || !utf8.Valid(raw) {
		json.Unmarshal(quoted, &name)
		if f, ok := fields[name]; ok {
			return f
		}
	}
	for _, f := range fields {
		if strings.EqualFold(f.name, name) {
			return f
		}
	}
	return nil
}
