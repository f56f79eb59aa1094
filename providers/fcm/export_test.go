package fcm

import (
	"time"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// EncodeTTL exports encode, which Send calls with the attempt's android.ttl,
// to the tests of package fcm_test.
func EncodeTTL(n *wire.Notification, ttl *time.Duration) ([]byte, error) { return encode(n, ttl, "") }

// RequestSizeHint exports requestSizeHint to the tests of package fcm_test.
func RequestSizeHint(n *wire.Notification) int { return requestSizeHint(n) }

// EncodeCollapse exports encode with an android.collapse_key, as Send
// encodes a redelivery, to the tests of package fcm_test.
func EncodeCollapse(n *wire.Notification, ttl *time.Duration, collapseKey string) ([]byte, error) {
	return encode(n, ttl, collapseKey)
}
