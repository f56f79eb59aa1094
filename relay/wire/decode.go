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
//
// Bodies of the common shape take scanFlat, a hand-written scanner; it
// gives up on anything else, and the general path on jsontext decodes the
// body from scratch, so that errors and odd cases stay where jsontext and
// encoding/json have them right.
func (n *Notification) UnmarshalJSON(data []byte) error {
	var body string // a copy of data, made at the first string worth keeping
	if scanFlat(data, n, &body) {
		return nil
	}
	return n.decode(data, body)
}

// decode is UnmarshalJSON's general path. body is the copy of data that
// scanFlat made before it gave up, or "".
func (n *Notification) decode(data []byte, body string) error {
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
	for d.dec.PeekKind() != '}' {
		name, err := d.dec.ReadValue() // a name, or the error in its place
		if err != nil {
			return err
		}
		// Before the next read, which may overwrite name.
		tag, str, num, flag := n.lookup(unquote(name))
		v, err := d.dec.ReadValue()
		if err != nil {
			return err
		}
		if v.Kind() == 'n' {
			continue
		}
		switch {
		case str != nil:
			if v.Kind() != '"' {
				return typeError(tag, v, reflect.TypeFor[string]())
			}
			if body == "" {
				body = string(data)
			}
			*str = d.text(body, v)
		case num != nil:
			if v.Kind() != '0' {
				return typeError(tag, v, reflect.TypeFor[int]())
			}
			i, err := strconv.ParseInt(string(v), 10, 0)
			if err != nil {
				return typeError(tag, v, reflect.TypeFor[int]())
			}
			*num = int(i)
		case flag != nil:
			if v.Kind() != 't' && v.Kind() != 'f' {
				return typeError(tag, v, reflect.TypeFor[bool]())
			}
			*flag = v.Kind() == 't'
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

// field finds the member of n whose json tag is name, with a string switch
// (cheaper than a map and a function per field): it returns the tag and a
// pointer to the member, as a string, an int or a bool. For a name that is
// no tag, all are zero.
func (n *Notification) field(name []byte) (tag string, str *string, num *int, flag *bool) {
	switch string(name) {
	case "ack_id":
		return "ack_id", &n.AckID, nil, nil
	case "platform":
		return "platform", &n.Platform, nil, nil
	case "server_id":
		return "server_id", &n.ServerID, nil, nil
	case "device_id":
		return "device_id", &n.DeviceID, nil, nil
	case "post_id":
		return "post_id", &n.PostID, nil, nil
	case "category":
		return "category", &n.Category, nil, nil
	case "sound":
		return "sound", &n.Sound, nil, nil
	case "message":
		return "message", &n.Message, nil, nil
	case "badge":
		return "badge", nil, &n.Badge, nil
	case "cont_ava":
		return "cont_ava", nil, &n.ContentAvailable, nil
	case "team_id":
		return "team_id", &n.TeamID, nil, nil
	case "channel_id":
		return "channel_id", &n.ChannelID, nil, nil
	case "root_id":
		return "root_id", &n.RootID, nil, nil
	case "channel_name":
		return "channel_name", &n.ChannelName, nil, nil
	case "type":
		return "type", &n.Type, nil, nil
	case "sub_type":
		return "sub_type", &n.SubType, nil, nil
	case "transport":
		return "transport", &n.Transport, nil, nil
	case "sender_id":
		return "sender_id", &n.SenderID, nil, nil
	case "sender_name":
		return "sender_name", &n.SenderName, nil, nil
	case "override_username":
		return "override_username", &n.OverrideUsername, nil, nil
	case "override_icon_url":
		return "override_icon_url", &n.OverrideIconURL, nil, nil
	case "from_webhook":
		return "from_webhook", &n.FromWebhook, nil, nil
	case "version":
		return "version", &n.Version, nil, nil
	case "is_crt_enabled":
		return "is_crt_enabled", nil, nil, &n.IsCRTEnabled
	case "is_id_loaded":
		return "is_id_loaded", nil, nil, &n.IsIDLoaded
	case "signature":
		return "signature", &n.Signature, nil, nil
	}
	return "", nil, nil, nil
}

// tagNames are Notification's json names, for the case-insensitive match.
var tagNames = func() (names []string) {
	for f := range reflect.TypeFor[Notification]().Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "-" {
			names = append(names, name)
		}
	}
	return names
}()

// lookup finds the member of n a (decoded) name stands for, as
// encoding/json does: the exact tag name first, else one equal under
// Unicode case folding.
func (n *Notification) lookup(name []byte) (tag string, str *string, num *int, flag *bool) {
	if tag, str, num, flag = n.field(name); tag == "" {
		tag, str, num, flag = n.fold(name)
	}
	return tag, str, num, flag
}

// fold is lookup for a name that is no exact tag name.
func (n *Notification) fold(name []byte) (tag string, str *string, num *int, flag *bool) {
	s := string(name)
	for _, t := range tagNames {
		if strings.EqualFold(t, s) {
			return n.field([]byte(t))
		}
	}
	return "", nil, nil, nil
}

// unquote returns the name a quoted JSON name stands for: its bytes
// between the quotes, unless escapes or invalid UTF-8 need encoding/json to
// decode them.
func unquote(quoted []byte) []byte {
	raw := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return raw
	}
	var name string
	json.Unmarshal(quoted, &name) // quoted is a valid string literal: it cannot fail
	return []byte(name)
}
