package appconfig

import (
	"errors"
	"net/url"
	"strings"
)

// Apple's gateways, as github.com/sideshow/apns2 names them (HostProduction,
// HostDevelopment); providers/apns's tests hold the two equal.
const (
	APNsProduction  = "https://api.push.apple.com"
	APNsDevelopment = "https://api.sandbox.push.apple.com"
)

// APNs is one app's `apns:` section in the YAML config.
type APNs struct {
	// Topic is the app's bundle id (apns-topic); VoIP pushes go to Topic+".voip".
	Topic string `yaml:"topic"`
	// AuthKeyFile is the token-auth signing key (Apple's AuthKey_XXXXXXXXXX.p8),
	// used with KeyID and TeamID. Exactly one of AuthKeyFile and CertFile is set.
	AuthKeyFile string `yaml:"auth_key_file"`
	// KeyID is the 10-character id of the key in AuthKeyFile.
	KeyID string `yaml:"key_id"`
	// TeamID is the Apple developer team the key belongs to.
	TeamID string `yaml:"team_id"`
	// CertFile is the certificate-auth alternative: a PEM file holding the
	// certificate and its key, or a PKCS#12 (.p12/.pfx) file.
	CertFile string `yaml:"cert_file"`
	// CertPasswordFile is a file holding the password of CertFile's key, if any.
	CertPasswordFile string `yaml:"cert_password_file"`
	// Development selects api.sandbox.push.apple.com instead of api.push.apple.com.
	Development bool `yaml:"development"`
	// Endpoint overrides the gateway's base URL, e.g. https://127.0.0.1:8443.
	Endpoint string `yaml:"endpoint"`
}

// Host returns the base URL pushes are posted to: Endpoint when set (without
// a trailing slash), else Apple's development or production gateway.
func (c APNs) Host() string {
	switch {
	case c.Endpoint != "":
		return strings.TrimRight(c.Endpoint, "/")
	case c.Development:
		return APNsDevelopment
	}
	return APNsProduction
}

// Hosts returns the host names (without port) the provider connects to, for
// the egress allowlist. It is empty when Endpoint is not a valid URL.
func (c APNs) Hosts() []string {
	u, err := url.Parse(c.Host())
	if err != nil || u.Hostname() == "" {
		return nil
	}
	return []string{strings.ToLower(u.Hostname())}
}

// Validate checks c without reading any file. The error names the key at
// fault, relative to the app's section ("apns.topic: required"); when several
// keys are wrong, it reports the first, on one line, so the caller can prefix
// it with the app's position.
func (c APNs) Validate() error {
	switch {
	case strings.TrimSpace(c.Topic) == "":
		return errors.New("apns.topic: required")
	case strings.ContainsAny(c.Topic, " \t\r\n/"):
		return errors.New("apns.topic: must be a bundle id such as com.mattermost.rn")
	case c.AuthKeyFile == "" && c.CertFile == "":
		return errors.New("apns.auth_key_file: required (or apns.cert_file for certificate auth)")
	case c.AuthKeyFile != "" && c.CertFile != "":
		return errors.New("apns.cert_file: set either apns.auth_key_file (token auth) or apns.cert_file (certificate auth), not both")
	}
	if c.AuthKeyFile != "" {
		switch {
		case c.KeyID == "":
			return errors.New("apns.key_id: required with apns.auth_key_file")
		case c.TeamID == "":
			return errors.New("apns.team_id: required with apns.auth_key_file")
		case c.CertPasswordFile != "":
			return errors.New("apns.cert_password_file: only used with apns.cert_file")
		}
	} else {
		switch {
		case c.KeyID != "":
			return errors.New("apns.key_id: only used with apns.auth_key_file")
		case c.TeamID != "":
			return errors.New("apns.team_id: only used with apns.auth_key_file")
		}
	}
	if c.Endpoint != "" {
		return checkAPNsEndpoint(c.Endpoint)
	}
	return nil
}

// checkAPNsEndpoint requires an https URL with a host and nothing a push URL
// cannot carry. It never quotes the URL, which might hold a password.
func checkAPNsEndpoint(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("apns.endpoint: not a valid URL (expected e.g. https://127.0.0.1:8443)")
	case u.Scheme != "https":
		return errors.New("apns.endpoint: must be an https:// URL, e.g. https://127.0.0.1:8443 (APNs is HTTP/2 over TLS)")
	case u.Hostname() == "":
		return errors.New("apns.endpoint: the URL has no host")
	case u.User != nil:
		return errors.New("apns.endpoint: must not carry user:password")
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("apns.endpoint: must not have a query or fragment")
	}
	return nil
}
