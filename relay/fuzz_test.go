package relay_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// FuzzSendPush throws arbitrary bodies at the send_push handler: it must
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
	handler := h.srv.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/send_push", bytes.NewReader(body)))
		var answer wire.Response
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("HTTP %d answer is not JSON: %q", rec.Code, rec.Body.String())
		}
		switch {
		case rec.Code == http.StatusOK:
			if answer.Status != wire.StatusOK && answer.Status != wire.StatusRemove && answer.Status != wire.StatusFail {
				t.Fatalf("200 with status %q", answer.Status)
			}
		case rec.Code == http.StatusBadRequest || rec.Code == http.StatusRequestEntityTooLarge:
			if answer.Error == "" {
				t.Fatalf("HTTP %d without an error", rec.Code)
			}
		default:
			t.Fatalf("unexpected HTTP %d: %s", rec.Code, rec.Body.String())
		}
	})
}
