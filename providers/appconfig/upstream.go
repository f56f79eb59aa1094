package appconfig

import (
	"errors"
	"fmt"
	"net/url"
)

// Upstream is one app's `upstream:` section.
type Upstream struct {
	// URL is the push proxy's base URL, like Mattermost's
	// PushNotificationServer (e.g. https://push.mattermost.com); the relay
	// posts to <url>/api/v1/send_push.
	URL string `yaml:"url"`
}

// Validate checks the URL without touching the network.
func (c Upstream) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("upstream.url: required (e.g. https://push.mattermost.com)")
	case err != nil:
		return errors.New("upstream.url: not a valid URL")
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("upstream.url: scheme %q is not http or https", u.Scheme)
	case u.Host == "":
		return errors.New("upstream.url: the URL has no host")
	case u.RawQuery != "" || u.Fragment != "":
		return errors.New("upstream.url: must be a base URL without query or fragment")
	}
	return nil
}

// Hosts returns the host the provider connects to, for the egress allowlist.
func (c Upstream) Hosts() []string {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil
	}
	return []string{u.Hostname()}
}
