package sandbox

import "testing"

func TestAckIDOfABody(t *testing.T) {
	tests := []struct {
		name      string
		apns, fcm string // bodies; "" skips
		want      string
	}{
		{name: "relay's shapes", apns: `{"aps":{"alert":"hi"},"ack_id":"a1","type":"message"}`,
			fcm: `{"message":{"token":"t","data":{"type":"message","ack_id":"a1"},"android":{"priority":"high"}}}`, want: "a1"},
		{name: "first member", apns: `{"ack_id":"a2","aps":{}}`, fcm: `{"message":{"data":{"ack_id":"a2"},"token":"t"}}`, want: "a2"},
		{name: "escaped", apns: `{"aps":{},"ack_id":"a\u00e9"}`, fcm: `{"message":{"data":{"ack_id":"a\u00e9"}}}`, want: "a\u00e9"},
		{name: "none", apns: `{"aps":{"ack_id":"nested, not the payload's"}}`, fcm: `{"message":{"ack_id":"x","data":{"type":"m"}},"data":{"ack_id":"y"}}`, want: ""},
		{name: "not a string", apns: `{"aps":{},"ack_id":7}`, fcm: `{"message":{"data":{"ack_id":null}}}`, want: ""},
		{name: "data null", fcm: `{"message":{"data":null,"token":"t"}}`, want: ""},
		{name: "not JSON", apns: `{"aps":`, fcm: `[1]`, want: ""},
	}
	for _, tc := range tests {
		if tc.apns != "" {
			if got := apnsAckID([]byte(tc.apns)); got != tc.want {
				t.Errorf("%s: apnsAckID(%s) = %q, want %q", tc.name, tc.apns, got, tc.want)
			}
		}
		if tc.fcm != "" {
			if got := fcmAckID([]byte(tc.fcm)); got != tc.want {
				t.Errorf("%s: fcmAckID(%s) = %q, want %q", tc.name, tc.fcm, got, tc.want)
			}
		}
	}
}
