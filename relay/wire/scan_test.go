package wire

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestScanFlatTakesTheCommonShape: the bodies the Mattermost server sends,
// as json.Marshal writes them (and indented), are all the fast path's,
// escapes in values included.
func TestScanFlatTakesTheCommonShape(t *testing.T) {
	message := Notification{AckID: "ack00000000000000000000042", Platform: "apple_rn-v2", ServerID: "bench-server-0001",
		DeviceID: strings.Repeat("0f1e2d3c", 8), PostID: "p7q2k3x9m1c8d4t5u2a6n0s1e0", Category: CategoryCanReply,
		Message: "@all the release is out,\n\"notes\" & <links> in the channel :tada: ✨\t\u2028", Badge: 3, ChannelID: "4xp9bkzfn3ym8j1wq6ce5tda7r",
		ChannelName: "Town Square", Type: TypeMessage, SenderID: "u2a6p7q2k3x9m1c8d4t5n0s1e0", SenderName: "élodie",
		Version: "v2", IsIDLoaded: true, Signature: "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJhY2tfaWQiOiJ4In0.c2lnbmF0dXJl"}
	clear := Notification{Platform: "android_rn", ServerID: "s", DeviceID: "fcm-token-00000001", Type: TypeClear, Badge: BadgeUnchanged}
	bodies := []string{decodeSeeds[0], decodeSeeds[1], decodeSeeds[2], `{}`, ` { } `}
	for _, n := range []Notification{message, clear} {
		compact, _ := json.Marshal(n)
		indented, _ := json.MarshalIndent(n, "\r\n", "\t ")
		bodies = append(bodies, string(compact), string(indented))
	}
	for _, body := range bodies {
		var n Notification
		var copied string
		if !scanFlat([]byte(body), &n, &copied) {
			t.Errorf("%s: the fast path gave up", body)
			continue
		}
		var want plain
		if err := json.Unmarshal([]byte(body), &want); err != nil || n != Notification(want) {
			t.Errorf("%s:\n got %+v\nwant %+v (%v)", body, n, want, err)
		}
	}
}

// TestScanFlatGivesUpLeavingNAlone: past the subset, scanFlat reports false
// and has not touched n, even when it got far into the body.
func TestScanFlatGivesUpLeavingNAlone(t *testing.T) {
	for _, body := range []string{
		`{"device_id":"new","message":"a\qb"}`, `{"device_id":"new","message":"a\u12"}`, `{"dev\u0069ce_id":"new"}`,
		`{"device_id":"new","badge":1.5}`, `{"device_id":"new","badge":"1"}`,
		`{"device_id":"new","x":{}}`, `{"device_id":"new","x":[]}`, "{\"device_id\":\"new\",\"message\":\"\xff\"}",
		"{\"device_id\":\"new\",\"message\":\"a\x01\"}", `{"device_id":"new","badge":99999999999999999999}`,
		`{"device_id":"new"`, `{"device_id":"new",}`, `{"device_id":"new","is_id_loaded":1}`, `null`, `[]`, ``,
	} {
		n := filled
		var copied string
		if scanFlat([]byte(body), &n, &copied) {
			t.Errorf("%q: the fast path took it", body)
		}
		if n != filled {
			t.Errorf("%q: n changed to %+v", body, n)
		}
	}
}

// TestStrAgreesWithByteByByte checks str's eight-bytes-at-a-time search
// against a plain loop, on strings made of the bytes around the ones it
// looks for (escapes valid and not among them), at every offset in a word.
func TestStrAgreesWithByteByByte(t *testing.T) {
	alphabet := []byte{0, 0x1f, ' ', '!', '"', '#', '[', '\\', ']', 'a', 'u', 'n', '0', 'F', 0x7f, 0x80, 0xbf, 0xc3, 0xa9, 0xe2, 0xff}
	want := func(data []byte) (end int, escaped, ok bool) {
		for end = 1; end < len(data); end++ {
			switch c := data[end]; {
			case c == '"':
				return end, escaped, escaped || utf8.Valid(data[1:end])
			case c == '\\':
				var n int
				switch {
				case end+1 < len(data) && strings.IndexByte(`"\\/bfnrt`, data[end+1]) >= 0:
					n = 2
				case end+5 < len(data) && data[end+1] == 'u' && isHex(data[end+2:end+6]):
					n = 6
				default:
					return 0, false, false
				}
				escaped = true
				end += n - 1
			case c < ' ':
				return 0, false, false
			}
		}
		return 0, false, false
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 300000 {
		data := make([]byte, 1+r.IntN(24))
		data[0] = '"'
		for i := 1; i < len(data); i++ {
			if r.IntN(3) == 0 {
				data[i] = alphabet[r.IntN(len(alphabet))]
			} else {
				data[i] = 'a' + byte(r.IntN(26))
			}
		}
		start, end, next, escaped, ok := str(data, 0)
		wantEnd, wantEscaped, wantOK := want(data)
		if ok != wantOK || ok && (start != 1 || end != wantEnd || next != end+1 || escaped != wantEscaped) {
			t.Fatalf("%q: str = %d, %d, %d, %v, %v; want end %d, %v, %v", data, start, end, next, escaped, ok, wantEnd, wantEscaped, wantOK)
		}
	}
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !strings.ContainsRune("0123456789abcdefABCDEF", rune(c)) {
			return false
		}
	}
	return true
}

// TestFieldCoversEveryTag: field's switch has every json name of
// Notification, pointing at its member.
func TestFieldCoversEveryTag(t *testing.T) {
	var n Notification
	v := reflect.ValueOf(&n).Elem()
	names := 0
	for i, f := range reflect.VisibleFields(v.Type()) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		names++
		tag, str, num, flag := n.field([]byte(name))
		var ptr any
		switch {
		case str != nil && num == nil && flag == nil:
			ptr = str
		case num != nil && str == nil && flag == nil:
			ptr = num
		case flag != nil && str == nil && num == nil:
			ptr = flag
		}
		if tag != name || ptr != v.Field(i).Addr().Interface() {
			t.Errorf("field(%q) = %q, %v, %v, %v: not member %s", name, tag, str, num, flag, f.Name)
		}
	}
	if len(tagNames) != names {
		t.Errorf("tagNames has %d names, want %d", len(tagNames), names)
	}
}

func TestUnmarshalJSONAllocatesOnce(t *testing.T) {
	body := []byte(decodeSeeds[0])
	allocs := testing.AllocsPerRun(100, func() {
		var n Notification
		if err := n.UnmarshalJSON(body); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 1 {
		t.Errorf("%v allocations, want 1: the copy of the body", allocs)
	}
	body = []byte(`{"badge":3,"root_id":"","x":"y"}`)
	if allocs := testing.AllocsPerRun(100, func() {
		var n Notification
		n.UnmarshalJSON(body)
	}); allocs != 0 {
		t.Errorf("%v allocations for a body without a string to keep, want 0", allocs)
	}
}
