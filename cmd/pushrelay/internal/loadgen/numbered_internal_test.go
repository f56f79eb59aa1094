package loadgen

import (
	"fmt"
	"testing"

	"github.com/pushrelay/pushrelay/relay/wire"
)

func TestNumbered(t *testing.T) {
	body := Bodies(1, DefaultMix(), "apple_rn", "android_rn")[0]
	for _, tc := range []struct{ run, n int64 }{
		{0, 0}, {1764000000123, 1}, {99999999999, 999999999999}, {123456789012345, 1234567890123456},
	} {
		var n wire.Notification
		if err := n.UnmarshalJSON(numbered(body, tc.run, tc.n)); err != nil {
			t.Fatalf("numbered(%d, %d): %v", tc.run, tc.n, err)
		}
		if want := fmt.Sprintf("%s%011d%012d", ackPrefix, tc.run%1e11, tc.n%1e12); n.AckID != want {
			t.Errorf("numbered(%d, %d): ack id %q, want %q", tc.run, tc.n, n.AckID, want)
		}
		if got := ackID(tc.run, tc.n); got != n.AckID {
			t.Errorf("ackID(%d, %d) = %q, numbered wrote %q", tc.run, tc.n, got, n.AckID)
		}
	}
	if string(body) != string(Bodies(1, DefaultMix(), "apple_rn", "android_rn")[0]) {
		t.Error("numbered changed the body it was given")
	}
}
