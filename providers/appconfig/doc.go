// Package appconfig owns the YAML types of an app's provider section, as
// relay's configuration reads them (apps[].apns, apps[].fcm,
// apps[].upstream), with the checks that need no network: Validate, whose
// errors name the key below the app ("apns.topic: required"), the default
// endpoints, and the hosts each provider connects to (Hosts, for the egress
// allowlist; FCM's reads its service account file for the token_uri).
//
// providers/apns, fcm and upstream alias these types as their Config, so
// that relay, which validates the configuration, names no concrete
// provider. Imports: the standard library only (net/url to check URLs,
// crypto/x509 to check a service account's key); it may import yaml and
// relay/wire, nothing else of ours (not relay, the policy, the command or
// any provider package), and no network code (no net/http, crypto/tls or
// provider library). cmd/pushrelay's TestImportRules holds this.
package appconfig
