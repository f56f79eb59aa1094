package fcm

import (
	"net/url"
	"strings"

	"github.com/pushrelay/pushrelay/providers/appconfig"
)

// DefaultEndpoint is Google's FCM base URL; Send posts to
// DefaultEndpoint+"/v1/projects/<project_id>/messages:send".
const DefaultEndpoint = appconfig.FCMDefaultEndpoint

// Config is one app's `fcm:` section in the YAML config. Its fields,
// Validate, Hosts, URLs and BaseURL live in providers/appconfig, which
// relay's configuration reads without naming this package.
type Config = appconfig.FCM

// hostOf returns the lower-cased host name of a URL already checked.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}
