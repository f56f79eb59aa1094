package appconfig

import (
	"errors"
	"net/url"
	"strings"
)

// FCMDefaultEndpoint is Google's FCM base URL; the provider posts to
// FCMDefaultEndpoint+"/v1/projects/<project_id>/messages:send".
const FCMDefaultEndpoint = "https://fcm.googleapis.com"

// FCM is one app's `fcm:` section in the YAML config.
type FCM struct {
	// ServiceAccountFile is the Firebase service account's JSON key (Firebase
	// console > Project settings > Service accounts > Generate new private key).
	ServiceAccountFile string `yaml:"service_account_file"`
	// Endpoint overrides https://fcm.googleapis.com (tests, private gateways);
	// the provider appends /v1/projects/<id>/messages:send. Sends use
	// HTTP/2 (ALPN h2), as Google's endpoint offers: a gateway must too.
	Endpoint string `yaml:"endpoint"`
}

// Validate checks c without reading any file. Errors name the key at fault,
// relative to the app's section ("fcm.service_account_file: required").
func (c FCM) Validate() error {
	var errs []error
	if strings.TrimSpace(c.ServiceAccountFile) == "" {
		errs = append(errs, errors.New("fcm.service_account_file: required (the Firebase service account's JSON key)"))
	}
	if c.Endpoint != "" {
		if err := checkFCMEndpoint(c.Endpoint); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Hosts returns the host names (without port) the provider connects to, for
// the egress allowlist: the FCM endpoint's and the service account's
// token_uri's. It reads and checks the service account file; errors name
// the key at fault.
func (c FCM) Hosts() ([]string, error) {
	endpoint, tokenURL, err := c.URLs()
	if err != nil {
		return nil, err
	}
	hosts := []string{hostOf(endpoint)}
	if h := hostOf(tokenURL); h != hosts[0] {
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// URLs returns the base URLs the provider connects to: the FCM endpoint
// (Endpoint, or FCMDefaultEndpoint) and the service account's token_uri. It
// reads and checks the service account file; errors name the key at fault.
func (c FCM) URLs() (endpoint, tokenURL string, err error) {
	if err := c.Validate(); err != nil {
		return "", "", err
	}
	sa, err := LoadServiceAccount(c.ServiceAccountFile)
	if err != nil {
		return "", "", err
	}
	return c.BaseURL(), sa.TokenEndpoint(), nil
}

// BaseURL is the base URL sends go to (Endpoint, or FCMDefaultEndpoint),
// without a trailing slash.
func (c FCM) BaseURL() string {
	if c.Endpoint == "" {
		return FCMDefaultEndpoint
	}
	return strings.TrimRight(c.Endpoint, "/")
}

// hostOf returns the lower-cased host name of a URL already checked.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

// checkFCMEndpoint requires an https URL with a host and nothing a push URL
// cannot carry. It never quotes the URL, which might hold a password.
func checkFCMEndpoint(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("fcm.endpoint: not a valid URL (expected e.g. https://fcm.googleapis.com)")
	case u.Scheme != "https":
		return errors.New("fcm.endpoint: must be an https:// URL, e.g. https://fcm.googleapis.com")
	case u.Hostname() == "":
		return errors.New("fcm.endpoint: the URL has no host")
	case u.User != nil:
		return errors.New("fcm.endpoint: must not carry user:password")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return errors.New("fcm.endpoint: must not have a query or fragment")
	case strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/v1"):
		return errors.New("fcm.endpoint: give the base URL without /v1 (the relay appends /v1/projects/<id>/messages:send)")
	}
	return nil
}
