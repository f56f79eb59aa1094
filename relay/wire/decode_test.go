package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// plain is Notification without its UnmarshalJSON: what encoding/json
// makes of a body by itself.
type plain Notification

// decodeBoth decodes body with UnmarshalJSON and, as the relay did before it
// had one, with a json.Decoder.
func decodeBoth(body []byte) (got Notification, gotErr error, want Notification, wantErr error) {
	gotErr = got.UnmarshalJSON(body)
	var p plain
	wantErr = json.NewDecoder(bytes.NewReader(body)).Decode(&p)
	return got, gotErr, Notification(p), wantErr
}

func TestUnmarshalJSONAgreesWithEncodingJSON(t *testing.T) {
	for _, body := range decodeSeeds {
		got, gotErr, want, wantErr := decodeBoth([]byte(body))
		if (gotErr == nil) != (wantErr == nil) {
			t.Errorf("%s: error %v, encoding/json says %v", body, gotErr, wantErr)
			continue
		}
		if gotErr == nil && got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", body, got, want)
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
		got, gotErr, want, wantErr := decodeBoth(body)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q: error %v, encoding/json says %v", body, gotErr, wantErr)
		}
		if gotErr == nil && got != want {
			t.Fatalf("%q:\n got %+v\nwant %+v", body, got, want)
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
}
