package relay

import (
	"context"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/providers/upstream"
)

// TestProviders builds the real providers, as cmd/pushrelay does, for the
// pipeline's tests: production code in relay names no provider.
var TestProviders Providers = testProviders

func testProviders(a AppConfig, eg *egress.Egress) (providers.Provider, error) {
	switch {
	case a.APNs != nil:
		return apns.New(*a.APNs, eg)
	case a.FCM != nil:
		return fcm.New(context.Background(), *a.FCM, eg)
	default:
		return upstream.New(*a.Upstream, eg)
	}
}
