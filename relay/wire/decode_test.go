package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

// plain is Notification without its UnmarshalJSON: what encoding/json
// makes of a body by itself.
type plain Notification

// decodeBoth decodes body with UnmarshalJSON and, as the relay did before it
// had one, with a json.Decoder, both into a copy of prior.
func decodeBoth(body []byte, prior Notification) (got Notification, gotErr error, want Notification, wantErr error) {
	got = prior
	gotErr = got.UnmarshalJSON(body)
	p := plain(prior)
	wantErr = json.NewDecoder(bytes.NewReader(body)).Decode(&p)
	return got, gotErr, Notification(p), wantErr
}

// filled has every field set, to see that a body changes only the fields
// it has a non-null value for.
var filled = Notification{AckID: "a", Platform: "p", ServerID: "s", DeviceID: "d", PostID: "p", Category: "c",
	Sound: "s", Message: "m", Badge: 7, ContentAvailable: 1, TeamID: "t", ChannelID: "c", RootID: "r",
	ChannelName: "c", Type: "t", SubType: "s", Transport: "t", SenderID: "s", SenderName: "s",
	OverrideUsername: "o", OverrideIconURL: "o", FromWebhook: "f", Version: "v", IsCRTEnabled: true,
	IsIDLoaded: true, Signature: "s", AppVersion: 2}

// agree reports how UnmarshalJSON and encoding/json disagree on body, or "".
func agree(body []byte) string {
	for _, prior := range []Notification{{}, filled} {
		got, gotErr, want, wantErr := decodeBoth(body, prior)
		if (gotErr == nil) != (wantErr == nil) {
			return fmt.Sprintf("error %v, encoding/json says %v", gotErr, wantErr)
		}
		if gotErr == nil && got != want {
			return fmt.Sprintf("\n got %+v\nwant %+v", got, want)
		}
	}
	return ""
}

func TestUnmarshalJSONAgreesWithEncodingJSON(t *testing.T) {
	for _, body := range decodeSeeds {
		if diff := agree([]byte(body)); diff != "" {
			t.Errorf("%q: %s", body, diff)
		}
	}
}

func TestUnmarshalJSONTypeErrorNamesTheField(t *testing.T) {
	for _, tt := range []struct{ body, field, value string }{
		{`{"badge":"3"}`, "badge", "string"},
		{`{"badge":1.5}`, "badge", "number 1.5"},
		{`{"device_id":42}`, "device_id", "number"},
		{`{"is_id_loaded":"yes"}`, "is_id_loaded", "string"},
		{`{"message":{"text":"x"}}`, "message", "object"},
		{`{"BADGE":"3"}`, "badge", "string"},
		{`[]`, "", "array"},
	} {
		var n Notification
		err := n.UnmarshalJSON([]byte(tt.body))
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) || te.Field != tt.field || te.Value != tt.value {
			t.Errorf("%s: error %#v, want a type error for field %q, value %q", tt.body, err, tt.field, tt.value)
		}
	}
}

// TestUnmarshalJSONKeepsNoReferenceToItsInput: the strings must outlive a
// reused request buffer.
func TestUnmarshalJSONKeepsNoReferenceToItsInput(t *testing.T) {
	body := []byte(`{"device_id":"abc","message":"hello"}`)
	var n Notification
	if err := n.UnmarshalJSON(body); err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'x'
	}
	if n.DeviceID != "abc" || n.Message != "hello" {
		t.Errorf("strings changed with the input buffer: %+v", n)
	}
}

func BenchmarkUnmarshalJSON(b *testing.B) {
	body := []byte(decodeSeeds[0])
	b.ReportAllocs()
	for b.Loop() {
		var n Notification
		if err := n.UnmarshalJSON(body); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzUnmarshalJSONAgreesWithEncodingJSON(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if diff := agree(body); diff != "" {
			t.Fatalf("%q: %s", body, diff)
		}
	})
}

var decodeSeeds = []string{
	`{"ack_id":"4xp9bkzfn3ym8j1wq6ce5tda7r","platform":"apple_rn-v2","server_id":"bench-server-0001","device_id":"0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0","post_id":"8xk2jd7s9f3mn4bq1wz6yt5vcr","category":"CAN_REPLY","message":"alice: the quarterly numbers are in","badge":3,"cont_ava":1,"team_id":"team-1","channel_id":"channel-1","root_id":"","channel_name":"Town Square","type":"message","sub_type":"","sender_id":"user-1","sender_name":"alice","override_username":"","override_icon_url":"","from_webhook":"","version":"v2","is_crt_enabled":true,"is_id_loaded":false,"signature":"sig.jwt.value"}`,
	`{"platform":"android_rn","server_id":"s","device_id":"d","type":"clear","badge":-1}`,
	`{"platform":"apple_rn","server_id":"s","device_id":"d","transport":"voip","is_id_loaded":true}`,
	`{"Device_ID":"folded","PLATFORM":"upper","ſerver_id":"long s","\u0074ype":"escaped name"}`,
	`{"message":"tab\tand \"quotes\" \u00e9 \ud83c\udf89 \ud800 lone"}`,
	"{\"message\":\"\xff\xfe invalid\",\"sender_name\":\"ok\"}",
	`{"device_id":"first","device_id":"second"}`,
	`{"device_id":null,"badge":null,"is_crt_enabled":null}`,
	`{"extra":{"nested":[1,2,{"x":null}]},"device_id":"d"}`,
	`{"badge":-0,"cont_ava":9223372036854775807}`,
	`{"badge":99999999999999999999}`,
	`{"badge":"x"}`, `{"badge":1e2}`, `{"is_id_loaded":1}`,
	`{"device_id":"d"} trailing garbage`, `{"device_id":"d"`, `{"device_id":}`,
	`null`, `[]`, `"str"`, `42`, ``, `   `, `{}`, `{"a":1,}`,

	// The edges of scanFlat's subset, and just past them.
	" \t\r\n{ \"device_id\" \t:\n\"d\"\r, \"badge\" : -2 ,\"is_id_loaded\":true , \"x\" : null\n}\t ",
	"{\"device_id\"\v:\"d\"}", "\xef\xbb\xbf{\"device_id\":\"d\"}", `{ }`, `{"device_id":"d",}`, `{,}`, `{"a" 1}`,
	`{"a":1 "b":2}`, `{a:1}`, `{1:1}`, `{"a":1}}`, "{\"a\":1\x00}", `{"device_id":"d"}{"device_id":"e"}`,
	`{"device_id":"d"}]`, `{"device_id":"d"`, `{"device_id":"d",`, `{"device_id":"d" `, `{"device_id":"d`, `{"device_id`, `{`,
	`{"badge":0}`, `{"badge":-0}`, `{"badge":1}`, `{"badge":-1}`, `{"badge":10}`, `{"badge":01}`, `{"badge":-01}`,
	`{"badge":00}`, `{"badge":1.0}`, `{"badge":1E+2}`, `{"badge":1e-2}`, `{"badge":-}`, `{"badge":1.}`, `{"badge":.5}`,
	`{"badge":+1}`, `{"badge":1x}`, `{"badge":0x10}`, `{"badge":9223372036854775807}`, `{"badge":9223372036854775808}`,
	`{"badge":-9223372036854775808}`, `{"badge":-9223372036854775809}`, `{"badge":-0.0}`, `{"badge":2,"badge":3}`,
	`{"badge":123456789012345678901234567890123456789}`, `{"cont_ava":-5}`,
	`{"x":0}`, `{"x":-0}`, `{"x":0.5}`, `{"x":-0.0e-0}`, `{"x":1E+09}`, `{"x":12.34e56}`, `{"x":1e}`, `{"x":1e+}`,
	`{"x":1.e1}`, `{"x":01}`, `{"x":-}`, `{"x":.1}`, `{"x":1.5.5}`, `{"x":Infinity}`, `{"x":NaN}`, `{"x":-Infinity}`,
	`{"x":true,"y":false,"z":null,"w":"s","v":1}`, `{"x":tru}`, `{"x":truex}`, `{"x":nul}`, `{"x":nullx}`, `{"x":fals}`,
	`{"x":[]}`, `{"x":{}}`, `{"x":[1],"device_id":"d"}`, `{"x":"a\"b","device_id":"d"}`, `{"x":"\u0041"}`,
	`{"device_id":"é 🎉 日本 ﷽"}`, "{\"device_id\":\"\xff\"}", "{\"device_id\":\"\xe6\x97\"}",
	"{\"device_id\":\"\xc0\xaf\"}", "{\"device_id\":\"\xed\xa0\x80\"}", "{\"device_id\":\"a\x01b\"}",
	"{\"device_id\":\"raw\ttab\"}", "{\"device_id\":\"raw\nnewline\"}", "{\"device_id\":\"del\x7f\"}",
	"{\"x\":\"\xff\",\"device_id\":\"d\"}", "{\"x\":\"a\x1fb\",\"device_id\":\"d\"}",
	"{\"device_id\":\"abcdefg\x00\"}", "{\"device_id\":\"abcdefgh\x1f\x20\x21\x22\"}",
	`{"device_id":"","message":"","platform":""}`, `{"":"x"}`, `{"":1,"device_id":"d"}`,
	`{"DEVICE_ID":"upper"}`, `{"Is_Id_Loaded":true,"bAdGe":4,"Cont_Ava":-1}`, `{"ſound":"long s","ſignature":"t"}`,
	`{"device_id":"exact","DEVICE_ID":"folded"}`, `{"DEVICE_ID":"folded","device_id":"exact"}`,
	`{"device_idx":"no","device":"no","AppVersion":3,"-":4,"appversion":5}`, "{\"\xff\":1,\"device_id\":\"d\"}",
	`{"\u0064evice_id":"escaped name"}`, `{"message":"a\nb"}`, `{"message":"a\u003cb\u003e"}`,
	`{"ack_id":null,"platform":null,"server_id":null,"device_id":null,"post_id":null,"category":null,"sound":null,"message":null,"badge":null,"cont_ava":null,"team_id":null,"channel_id":null,"root_id":null,"channel_name":null,"type":null,"sub_type":null,"transport":null,"sender_id":null,"sender_name":null,"override_username":null,"override_icon_url":null,"from_webhook":null,"version":null,"is_crt_enabled":null,"is_id_loaded":null,"signature":null}`,
	`{"device_id":true}`, `{"device_id":1}`, `{"badge":true}`, `{"badge":"1"}`, `{"is_id_loaded":"true"}`,
	`{"is_id_loaded":0}`, `{"is_id_loaded":tru}`, `{"is_id_loaded":falsey}`, `{"badge":"x","badge":1}`,
	`{"device_id":"d","badge":[]}`, `{"device_id":"d","message":{}}`,
	// Escapes in values, on the fast path: every kind, surrogate pairs,
	// lone and reversed surrogates, invalid ones, at a string's ends.
	`{"message":"\n\"q\" \\ \/ \b\f\r\t \u003c\u0026\u003e \ud83c\udf89 \ud800 \udc00\ud800 end\u00E9"}`,
	`{"message":"\\","sender_name":"\"","x":"\u0000","device_id":"\u12345"}`,
	`{"message":"a\x"}`, `{"message":"a\u12g4"}`, `{"message":"a\u12"}`, `{"message":"a\`, `{"x":"\'"}`,
	"{\"message\":\"\\n\xff\xfe\"}", `{"badge":3,"message":"line\nline","extra":"\ud83c"}`,
}
