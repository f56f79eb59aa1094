package apns

import "github.com/pushrelay/pushrelay/providers/appconfig"

// Config is one app's `apns:` section in the YAML config. Its fields,
// Validate, Host and Hosts live in providers/appconfig, which relay's
// configuration reads without naming this package.
type Config = appconfig.APNs
