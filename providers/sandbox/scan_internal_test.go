package sandbox

import (
	"bytes"
	stdjson "encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// The look-alikes used to read bodies with json.Unmarshal and to answer with
// encoding/json. The references below are that code; the tests hold the
// scans and the hand-written answers to it.

// refAPNsPayload is checkAPNsPayload as it was.
func refAPNsPayload(body []byte) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return "PayloadEmpty"
	}
	var payload struct {
		APS jsontext.Value `json:"aps"`
	}
	if err := json.Unmarshal(body, &payload); err != nil {
		return "BadPayload"
	}
	if payload.APS.Kind() != '{' {
		return "PayloadEmpty"
	}
	return ""
}

// refFCMBody is how serveSend and check read a send's body before:
// json.Unmarshal's error, message.token, validate_only, and the data names
// whose value is not a string (check named one of them, picked at random).
func refFCMBody(body []byte) (token string, validateOnly bool, badData []string, err error) {
	var b fcmBody
	if err := json.Unmarshal(body, &b); err != nil {
		return "", false, nil, err
	}
	if b.Message != nil {
		token = b.Message.Token
		for k, v := range b.Message.Data {
			if v.Kind() != '"' {
				badData = append(badData, k)
			}
		}
	}
	return token, b.ValidateOnly, badData, nil
}

const (
	typicalAPNs = `{"aps":{"alert":{"body":"You've received a new message."},"badge":3,"sound":"default",` +
		`"mutable-content":1,"category":"CAN_REPLY"},"ack_id":"a1","type":"message","version":"v2","is_id_loaded":true}`
	typicalFCM = `{"message":{"token":"tok-1","data":{"ack_id":"a1","type":"message","badge":"3","is_id_loaded":"true"},` +
		`"android":{"priority":"high","ttl":"3600s"}}}`
)

func TestCheckAPNsPayload(t *testing.T) {
	tests := []struct {
		name, body string
		want       string
		scanned    bool // taken by the scan, not left to json.Unmarshal
	}{
		{"typical", typicalAPNs, "", true},
		{"aps only", `{"aps":{}}`, "", true},
		{"white space around", " \n\t{ \"aps\" : { } } \r\n", "", true},
		{"aps last, after nested values", `{"a":[1,{"b":[null,true,false,-1.5e3]}],"c":{},"aps":{"alert":"x"}}`, "", true},
		{"escaped name", `{"\u0061ps":{}}`, "", true},
		{"escapes in values", `{"aps":{"alert":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}}`, "", true},
		{"UTF-8 in values", `{"aps":{"alert":"héllo 😀"}}`, "", true},
		{"empty", ``, "PayloadEmpty", false},
		{"white space only", " \n\t\r", "PayloadEmpty", false},
		{"no aps", `{"type":"message"}`, "PayloadEmpty", true},
		{"empty object", `{}`, "PayloadEmpty", true},
		{"APS in another case", `{"APS":{}}`, "PayloadEmpty", true},
		{"aps a string", `{"aps":"alert"}`, "PayloadEmpty", true},
		{"aps an array", `{"aps":[{}]}`, "PayloadEmpty", true},
		{"aps a number", `{"aps":1}`, "PayloadEmpty", true},
		{"aps null", `{"aps":null}`, "PayloadEmpty", true},
		{"null", `null`, "PayloadEmpty", false},
		{"not JSON", `nope`, "BadPayload", false},
		{"truncated", `{"aps":`, "BadPayload", false},
		{"truncated inside aps", `{"aps":{"alert":"x"`, "BadPayload", false},
		{"an array", `[{"aps":{}}]`, "BadPayload", false},
		{"a string", `"aps"`, "BadPayload", false},
		{"a number", `42`, "BadPayload", false},
		{"duplicate aps", `{"aps":{},"aps":{}}`, "BadPayload", false},
		{"duplicate aps, escaped", `{"aps":{},"\u0061ps":{}}`, "BadPayload", false},
		{"duplicate in aps", `{"aps":{"badge":1,"badge":2}}`, "BadPayload", false},
		{"duplicate elsewhere", `{"x":1,"x":2,"aps":{}}`, "BadPayload", false},
		{"duplicate deep", `{"aps":{},"x":[{"y":1,"y":1}]}`, "BadPayload", false},
		{"trailing garbage", `{"aps":{}} x`, "BadPayload", false},
		{"two values", `{"aps":{}}{}`, "BadPayload", false},
		{"trailing comma", `{"aps":{},}`, "BadPayload", false},
		{"single quotes", `{'aps':{}}`, "BadPayload", false},
		{"name not a string", `{1:{}}`, "BadPayload", false},
		{"invalid UTF-8", "{\"aps\":{\"alert\":\"\xff\"}}", "BadPayload", false},
		{"invalid escape", `{"aps":{"alert":"\x"}}`, "BadPayload", false},
		{"lone surrogate", `{"aps":{"alert":"\ud800"}}`, "BadPayload", false},
		{"bad number", `{"aps":{"badge":01}}`, "BadPayload", false},
		{"byte order mark", "\ufeff{\"aps\":{}}", "BadPayload", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			if got := checkAPNsPayload(body); got != tc.want {
				t.Errorf("checkAPNsPayload(%#q) = %q, want %q", tc.body, got, tc.want)
			}
			if ref := refAPNsPayload(body); ref != tc.want {
				t.Errorf("the reference says %q: the table is wrong", ref)
			}
			if _, ok := scanAPNsPayload(body); ok != tc.scanned {
				t.Errorf("scanned %v, want %v", ok, tc.scanned)
			}
		})
	}
}

// fcmBodyTests are sends' bodies with what check must make of them.
var fcmBodyTests = []struct {
	name, body   string
	token        string
	validateOnly bool
	badData      string // "" for none
	err          bool   // json.Unmarshal refuses it
	scanned      bool   // taken by the scan, not left to json.Unmarshal
}{
	{"typical", typicalFCM, "tok-1", false, "", false, true},
	{"validate_only", `{"validate_only":true,"message":{"token":"t"}}`, "t", true, "", false, true},
	{"validate_only false", `{"validate_only":false,"message":{"token":"t"}}`, "t", false, "", false, true},
	{"validate_only null", `{"validate_only":null,"message":{"token":"t"}}`, "t", false, "", false, true},
	{"validate_only a string", `{"validate_only":"true","message":{"token":"t"}}`, "", false, "", true, false},
	{"validate_only a number", `{"validate_only":1,"message":{"token":"t"}}`, "", false, "", true, false},
	{"white space around", " \n{ \"message\" : { \"token\" : \"t\" } }\t", "t", false, "", false, true},
	{"escaped names and token", `{"m\u0065ssage":{"tok\u0065n":"t\u00e9\n\"","d\u0061ta":{"\u006b":1}}}`, "té\n\"", false, "k", false, true},
	{"unknown members of every kind", `{"x":[1,{"y":null}],"message":{"topic":"news","token":"t","apns":{"a":[]}},"z":"s"}`, "t", false, "", false, true},
	{"no message", `{"validate_only":true}`, "", true, "", false, true},
	{"message null", `{"message":null}`, "", false, "", false, true},
	{"message empty", `{"message":{}}`, "", false, "", false, true},
	{"Message in another case", `{"Message":{"token":"t"}}`, "", false, "", false, true},
	{"message a string", `{"message":"t"}`, "", false, "", true, false},
	{"message an array", `{"message":[]}`, "", false, "", true, false},
	{"token null", `{"message":{"token":null}}`, "", false, "", false, true},
	{"token a number", `{"message":{"token":5}}`, "", false, "", true, false},
	{"token an object", `{"message":{"token":{}}}`, "", false, "", true, false},
	{"data null", `{"message":{"token":"t","data":null}}`, "t", false, "", false, true},
	{"data empty", `{"message":{"token":"t","data":{}}}`, "t", false, "", false, true},
	{"data a string", `{"message":{"token":"t","data":"k=v"}}`, "", false, "", true, false},
	{"data an array", `{"message":{"token":"t","data":[]}}`, "", false, "", true, false},
	{"data value a number", `{"message":{"token":"t","data":{"a":"1","badge":1}}}`, "t", false, "badge", false, true},
	{"data value an object", `{"message":{"token":"t","data":{"o":{"x":"y"}}}}`, "t", false, "o", false, true},
	{"data value an array", `{"message":{"token":"t","data":{"o":["y"]}}}`, "t", false, "o", false, true},
	{"data value null", `{"message":{"token":"t","data":{"n":null}}}`, "t", false, "n", false, true},
	{"data value a bool", `{"message":{"token":"t","data":{"b":true}}}`, "t", false, "b", false, true},
	{"data value bad, no token", `{"message":{"data":{"badge":1}}}`, "", false, "badge", false, true},
	{"data before token", `{"message":{"data":{"a":"b"},"token":"t"}}`, "t", false, "", false, true},
	{"null", `null`, "", false, "", false, false},
	{"empty", ``, "", false, "", true, false},
	{"white space only", "  \n", "", false, "", true, false},
	{"not JSON", `{"message":`, "", false, "", true, false},
	{"an array", `[{"message":{"token":"t"}}]`, "", false, "", true, false},
	{"a string", `"t"`, "", false, "", true, false},
	{"trailing garbage", typicalFCM + ` x`, "", false, "", true, false},
	{"two values", typicalFCM + `{}`, "", false, "", true, false},
	{"trailing comma", `{"message":{"token":"t",}}`, "", false, "", true, false},
	{"duplicate message", `{"message":{"token":"a"},"message":{"token":"b"}}`, "", false, "", true, false},
	{"duplicate message, null first", `{"message":null,"message":{"token":"b"}}`, "", false, "", true, false},
	{"duplicate token", `{"message":{"token":"a","token":"b"}}`, "", false, "", true, false},
	{"duplicate data name", `{"message":{"token":"t","data":{"k":"1","k":"2"}}}`, "", false, "", true, false},
	{"duplicate data name, escaped", `{"message":{"token":"t","data":{"k":"1","\u006b":"2"}}}`, "", false, "", true, false},
	{"duplicate elsewhere", `{"message":{"token":"t","android":{"p":1,"p":2}}}`, "", false, "", true, false},
	{"duplicate validate_only", `{"validate_only":true,"validate_only":true,"message":{"token":"t"}}`, "", false, "", true, false},
	{"invalid UTF-8", "{\"message\":{\"token\":\"\xff\"}}", "", false, "", true, false},
	{"invalid UTF-8 in a data name", "{\"message\":{\"token\":\"t\",\"data\":{\"\xff\":1}}}", "", false, "", true, false},
	{"bad data value and invalid JSON later", `{"message":{"token":"t","data":{"b":1}},"x":[}`, "", false, "", true, false},
}

func TestParseFCMBody(t *testing.T) {
	for _, tc := range fcmBodyTests {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			got, err := parseFCMBody(body)
			if (err != nil) != tc.err || got.token != tc.token || got.validateOnly != tc.validateOnly ||
				got.badData != tc.badData || got.hasBadData != (tc.badData != "") {
				t.Errorf("parseFCMBody(%#q) = %+v, %v; want token %q, validate_only %v, bad data %q, error %v",
					tc.body, got, err, tc.token, tc.validateOnly, tc.badData, tc.err)
			}
			if _, ok := scanFCMBody(body); ok != tc.scanned {
				t.Errorf("scanned %v, want %v", ok, tc.scanned)
			}
			compareFCMBody(t, body)
		})
	}
}

// compareFCMBody fails t unless parseFCMBody reads body as refFCMBody does,
// errors (whose text FCM's answer quotes) included.
func compareFCMBody(t *testing.T, body []byte) {
	t.Helper()
	got, err := parseFCMBody(body)
	token, validateOnly, badData, refErr := refFCMBody(body)
	if fmt.Sprint(err) != fmt.Sprint(refErr) {
		t.Fatalf("parseFCMBody(%#q): error %v, json.Unmarshal's %v", body, err, refErr)
	}
	if got.token != token || got.validateOnly != validateOnly || got.hasBadData != (len(badData) > 0) ||
		got.hasBadData && !slices.Contains(badData, got.badData) {
		t.Fatalf("parseFCMBody(%#q) = %+v; json.Unmarshal read token %q, validate_only %v, bad data in %q",
			body, got, token, validateOnly, badData)
	}
}

// The fuzzers check the scans against json.Unmarshal beyond the tables: go
// test runs them on the tables' bodies, go test -fuzz on more.

func FuzzCheckAPNsPayload(f *testing.F) {
	f.Add([]byte(typicalAPNs))
	f.Add([]byte(`{"aps":{},"\u0061ps":1}`))
	f.Add([]byte(`{"a":[{"b":{}}],"aps":null} `))
	f.Fuzz(func(t *testing.T, body []byte) {
		if got, want := checkAPNsPayload(body), refAPNsPayload(body); got != want {
			t.Fatalf("checkAPNsPayload(%#q) = %q, json.Unmarshal says %q", body, got, want)
		}
	})
}

func FuzzParseFCMBody(f *testing.F) {
	for _, tc := range fcmBodyTests {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(compareFCMBody)
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{
		"", "Unregistered", "projects/p-1/messages/0:1700000000000%0123456789abcdef", "a b~",
		`quote"`, `back\slash`, "a<b", "a>b", "a&b", "tab\t", "new\nline", "\x00", "\x1f", "\x7f", "héllo 😀", "\xff\xfe", "\u2028\u2029",
	} {
		want, _ := stdjson.Marshal(s)
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("appendJSONString(%q) = %s, want x%s", s, got, want)
		}
	}
}

// TestAnswers holds the answers built by hand to what encoding/json
// marshaled before.
func TestAnswers(t *testing.T) {
	t.Run("FCM errors", func(t *testing.T) {
		type detail struct {
			Type      string `json:"@type"`
			ErrorCode string `json:"errorCode"`
		}
		type body struct {
			Code    int      `json:"code"`
			Message string   `json:"message"`
			Status  string   `json:"status"`
			Details []detail `json:"details,omitempty"`
		}
		errs := []googleError{
			*deadTokenError("UNREGISTERED"), *deadTokenError("INVALID_ARGUMENT"),
			faultError(Fault{Status: 503}), faultError(Fault{Status: 418, Reason: "<TEAPOT> & \"co\""}),
			{http.StatusNotFound, "NOT_FOUND", "The requested URL /v1/é\x00 was not found on this server.", ""},
		}
		for _, e := range errs {
			b := body{Code: e.code, Message: e.message, Status: e.status}
			if e.fcmCode != "" {
				b.Details = []detail{{Type: fcmErrorType, ErrorCode: e.fcmCode}}
			}
			want, _ := stdjson.Marshal(map[string]body{"error": b})
			if got := e.appendJSON(nil); !bytes.Equal(got, want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		}
	})
	t.Run("APNs refusals", func(t *testing.T) {
		s := &APNs{}
		at := time.UnixMilli(1700000000123)
		for _, e := range []apnsError{
			{http.StatusGone, "Unregistered", at}, {http.StatusBadRequest, "BadDeviceToken", at},
			{http.StatusServiceUnavailable, "<Busy> & \"co\"", at},
		} {
			want := map[string]any{"reason": e.reason}
			if e.status == http.StatusGone {
				want["timestamp"] = e.at.UnixMilli()
			}
			wantBody, _ := stdjson.Marshal(want)
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/3/device/x", nil)
			r.Header.Set("apns-id", "123E4567-E89B-12D3-A456-426614174000")
			s.refuse(w, r, &APNsRequest{}, e)
			if w.Code != e.status || w.Body.String() != string(wantBody) ||
				w.Header().Get("Content-Type") != "application/json; charset=UTF-8" ||
				w.Header().Get("apns-id") != "123E4567-E89B-12D3-A456-426614174000" {
				t.Errorf("answered %d %v %s, want %d %s", w.Code, w.Header(), w.Body, e.status, wantBody)
			}
		}
	})
}

func TestIDs(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)
	name := regexp.MustCompile(`^projects/p-1/messages/0:[0-9]{13}%[0-9a-f]{16}$`)
	seen := map[string]bool{}
	for range 10000 {
		id, n := newUUID(), messageName("p-1")
		if !uuid.MatchString(id) || !name.MatchString(n) {
			t.Fatalf("newUUID() = %q, messageName() = %q", id, n)
		}
		if seen[id] || seen[n] {
			t.Fatalf("%q or %q handed out twice", id, n)
		}
		seen[id], seen[n] = true, true
	}
}

// TestFCMRoute holds the look-alike's routing to what its ServeMux alone
// answers, for the paths route serves itself and for the ones it leaves to
// the mux.
func TestFCMRoute(t *testing.T) {
	s := &FCM{tokens: map[string]accessToken{}, dead: map[string]string{}, srv: &server{done: make(chan struct{})}}
	s.tokens["ya29.ok"] = accessToken{expiry: time.Now().Add(time.Hour)}
	mux := s.newMux()
	routed := s.route(mux)
	for _, tc := range []struct{ method, target, authz string }{
		{"POST", "/v1/projects/p/messages:send", ""},
		{"POST", "/v1/projects/p/messages:send", "Bearer ya29.ok"},
		{"GET", "/v1/projects/p/messages:send", ""},
		{"POST", "/v1/projects/./messages:send", "Bearer ya29.ok"},
		{"POST", "/v1/projects/../messages:send", "Bearer ya29.ok"},
		{"POST", "/v1/projects/%2E%2E/messages:send", "Bearer ya29.ok"},
		{"POST", "/v1/projects/a%2Fb/messages:send", "Bearer ya29.ok"},
		{"POST", "/v1/projects/p%20q/messages:send?x=1", "Bearer ya29.ok"},
		{"POST", "/v1//projects/p/messages:send", "Bearer ya29.ok"},
		{"POST", "/v1/projects/p/messages:send/", "Bearer ya29.ok"},
		{"POST", "/v1/projects//messages:send", "Bearer ya29.ok"},
		{"GET", "/token", ""},
		{"GET", "/token/", ""},
		{"GET", "/nothing/here", ""},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			answer := func(h http.Handler) *httptest.ResponseRecorder {
				// A body with a bad data value: an error, the same from
				// both, whose answer goes through every check.
				body := `{"message":{"token":"t","data":{"badge":1}}}`
				r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(body))
				if tc.authz != "" {
					r.Header.Set("Authorization", tc.authz)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			got, want := answer(routed), answer(mux)
			if got.Code != want.Code || got.Body.String() != want.Body.String() || fmt.Sprint(got.Header()) != fmt.Sprint(want.Header()) {
				t.Errorf("routed: %d %v %s\nmux:    %d %v %s", got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
			}
		})
	}
}
