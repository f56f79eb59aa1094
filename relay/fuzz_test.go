package relay_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// FuzzSendPush throws arbitrary bodies at send_push over a real connection: it must
// never panic, must answer JSON, and must answer 200 with OK/REMOVE/FAIL
// for a push or a 4xx for something that is not one.
func FuzzSendPush(f *testing.F) {
	for _, seed := range []string{
		`{"platform":"apple_rn","server_id":"s","device_id":"d","type":"message","message":"hi :tada:"}`,
		`{"platform":"android_rn-v2","server_id":"s","device_id":"d","type":"clear","badge":-1}`,
		`{"platform":"apple_rn","server_id":"s","device_id":"d","transport":"voip","is_id_loaded":true}`,
		`{"platform":"","badge":"x"}`, `[]`, `null`, `{"message":"\xff\xfe"}`, ``,
	} {
		f.Add([]byte(seed))
	}
	h := start(f, "{}")
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := http.Post(h.url+"/api/v1/send_push", "", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code := resp.StatusCode
		var answer wire.Response
		if err := json.Unmarshal(raw, &answer); err != nil {
			t.Fatalf("HTTP %d answer is not JSON: %q", code, raw)
		}
		switch {
		case code == http.StatusOK:
			if answer.Status != wire.StatusOK && answer.Status != wire.StatusRemove && answer.Status != wire.StatusFail {
				t.Fatalf("200 with status %q", answer.Status)
			}
		case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge:
			if answer.Error == "" {
				t.Fatalf("HTTP %d without an error", code)
			}
		default:
			t.Fatalf("unexpected HTTP %d: %s", code, raw)
		}
	})
}
