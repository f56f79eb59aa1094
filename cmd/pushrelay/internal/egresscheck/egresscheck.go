package egresscheck

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/relay"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// zeroToken is the device token of the APNs check's push: a well-formed
// token no device has, which Apple refuses with BadDeviceToken, but only
// once it has accepted the provider's key or certificate and the topic.
var zeroToken = strings.Repeat("0", 64)

// CheckEgress checks, from this host and through the egress path the relay
// builds from cfg (egress.proxy or HTTPS_PROXY, egress.source_address,
// egress.ca_file, egress.allowed_hosts, whose default is AppHosts), that
// every host the configured apps use can be reached on its port: DNS (or
// the proxy's CONNECT or SOCKS5 tunnel), TCP, TLS with the certificate
// verified, ALPN h2 for APNs and FCM. Then, with each app's credentials: for an
// APNs app, a push to an all-zero device token, which Apple answers
// BadDeviceToken once it accepted the key (nothing is delivered); for an
// FCM app, an OAuth access token fetched with the service account. It
// writes the report for the network team to w (a table of host, port,
// path, result and what to open, then every step) and returns an error
// naming each host that failed. Nothing it writes holds a secret.
func CheckEgress(ctx context.Context, cfg *relay.Config, w io.Writer) error {
	hosts, err := relay.AppHosts(cfg)
	if err != nil {
		return err
	}
	eg, err := egress.New(cfg.Egress, hosts, nil)
	if err != nil {
		return err
	}
	defer eg.CloseIdleConnections()
	targets, err := egressTargets(cfg, eg)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "egress: %s\n\n", eg)
	results := eg.Probe(ctx, targets)
	if err := egress.WriteReport(w, results); err != nil {
		return err
	}
	var failed []string
	for _, r := range results {
		if r.Err != nil {
			failed = append(failed, net.JoinHostPort(r.Target.Host, strconv.Itoa(r.Target.Port)))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("egress check: %d of %d host(s) cannot be reached as configured: %s",
			len(failed), len(results), strings.Join(failed, ", "))
	}
	fmt.Fprintf(w, "\nall %d host(s) can be reached as configured\n", len(results))
	return nil
}

// egressTargets lists the host:port each app connects to, once each, in
// the order of the apps, with the checks of the apps' credentials.
func egressTargets(cfg *relay.Config, eg *egress.Egress) ([]egress.Target, error) {
	var list []*egress.Target
	byAddr := map[string]*egress.Target{}
	add := func(key, raw string, needH2 bool, checks ...egress.Check) error {
		u, err := url.Parse(raw)
		if err != nil || u.Hostname() == "" {
			return fmt.Errorf("%s: not a valid URL", key)
		}
		port := 443
		if u.Scheme == "http" {
			port = 80
		}
		if p := u.Port(); p != "" {
			if port, err = strconv.Atoi(p); err != nil {
				return fmt.Errorf("%s: port %q is not a number", key, p)
			}
		}
		host := strings.ToLower(u.Hostname())
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		t, ok := byAddr[addr]
		if !ok {
			t = &egress.Target{Host: host, Port: port, Plain: u.Scheme == "http"}
			byAddr[addr] = t
			list = append(list, t)
		}
		t.NeedH2 = t.NeedH2 || needH2
		t.Checks = append(t.Checks, checks...)
		return nil
	}
	for i, a := range cfg.Apps {
		key := fmt.Sprintf("apps[%d]", i)
		var err error
		switch {
		case a.APNs != nil:
			err = add(key+".apns.endpoint", a.APNs.Host(), true, apnsCheck(i, a, eg))
		case a.FCM != nil:
			endpoint, tokenURL, uerr := a.FCM.URLs()
			if uerr != nil {
				return nil, fmt.Errorf("%s.%w", key, uerr)
			}
			if err = add(key+".fcm.endpoint", endpoint, true); err == nil { // sent to over HTTP/2 only
				err = add(key+".fcm.service_account_file: token_uri", tokenURL, false, fcmCheck(i, a, eg))
			}
		case a.Upstream != nil:
			err = add(key+".upstream.url", a.Upstream.URL, false)
		}
		if err != nil {
			return nil, err
		}
	}
	out := make([]egress.Target, len(list))
	for i, t := range list {
		out[i] = *t
	}
	return out, nil
}

// apnsCheck pushes to an all-zero device token with the app's credentials.
func apnsCheck(i int, a relay.AppConfig, eg *egress.Egress) egress.Check {
	key := fmt.Sprintf("apps[%d]", i)
	return egress.Check{
		Name: fmt.Sprintf("%s %s: APNs credentials", key, a.Platform),
		Fix: fmt.Sprintf("the way to Apple works, but Apple refused %s's push: check %s.apns key_id, team_id and auth_key_file "+
			"(or cert_file), topic and development", key, key),
		Run: func(ctx context.Context) (string, error) {
			p, err := apns.New(*a.APNs, eg)
			if err != nil {
				return "", fmt.Errorf("%s.%w", key, err)
			}
			defer p.Close()
			n := wire.Notification{Platform: a.Platform, ServerID: "pushrelay-check", DeviceID: zeroToken,
				Type: wire.TypeTest, Badge: wire.BadgeUnchanged}
			if err := n.Normalize(); err != nil {
				return "", err
			}
			res := p.Send(ctx, &n)
			switch res.Outcome {
			case providers.TokenDead:
				return fmt.Sprintf("a push to an all-zero device token was refused with %s: the credentials and topic are accepted", res.Reason), nil
			case providers.Delivered:
				return "a push to an all-zero device token was accepted: the credentials and topic are accepted", nil
			}
			if res.Err == nil {
				return "", fmt.Errorf("push to an all-zero device token: %s", res.Reason)
			}
			return "", fmt.Errorf("push to an all-zero device token: %w", res.Err)
		},
	}
}

// fcmCheck fetches an OAuth access token with the app's service account.
func fcmCheck(i int, a relay.AppConfig, eg *egress.Egress) egress.Check {
	key := fmt.Sprintf("apps[%d]", i)
	return egress.Check{
		Name: fmt.Sprintf("%s %s: OAuth token", key, a.Platform),
		Fix: fmt.Sprintf("the way to the token endpoint works, but no access token came: check %s.fcm.service_account_file "+
			"(a deleted or disabled key is refused with invalid_grant)", key),
		Run: func(ctx context.Context) (string, error) {
			if err := fcm.FetchToken(ctx, *a.FCM, eg); err != nil {
				return "", fmt.Errorf("%s: %w", key, err)
			}
			return "an access token was issued for the service account", nil
		},
	}
}
