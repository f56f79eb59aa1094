package fcm

import (
	"firebase.google.com/go/v4/messaging"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// AppendRequest exports appendRequest to the tests of package fcm_test.
func AppendRequest(dst []byte, m *messaging.Message) ([]byte, error) { return appendRequest(dst, m) }

// RequestSizeHint exports requestSizeHint to the tests of package fcm_test.
func RequestSizeHint(n *wire.Notification) int { return requestSizeHint(n) }
