// Package wiring builds what cmd/pushrelay hands the relay: one provider
// per configured app (APNs, FCM or an upstream push proxy) over the egress
// path the relay built. It is the one place that names the concrete
// providers, so that adding a provider never touches the pipeline.
//
// It may import relay (for AppConfig), providers and its sub-packages; it
// must not import providers/sandbox (the look-alikes), so that serve never
// links them.
package wiring

import (
	"context"
	"fmt"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/providers/upstream"
	"github.com/pushrelay/pushrelay/relay"
)

// Providers is the relay.Providers of pushrelay: it makes the provider app
// configures, sending through eg. Its errors name the key below the app
// (e.g. "apns.topic: ..."), as the relay expects.
func Providers(app relay.AppConfig, eg *egress.Egress) (providers.Provider, error) {
	switch {
	case app.APNs != nil:
		return apns.New(*app.APNs, eg)
	case app.FCM != nil:
		return fcm.New(context.Background(), *app.FCM, eg)
	case app.Upstream != nil:
		return upstream.New(*app.Upstream, eg)
	}
	return nil, fmt.Errorf("platform %q: no provider configured", app.Platform)
}

var _ relay.Providers = Providers
