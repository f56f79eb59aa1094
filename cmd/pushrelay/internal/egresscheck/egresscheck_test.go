package egresscheck_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/egresscheck"
	"github.com/pushrelay/pushrelay/providers/egress/egresstest"
	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay"
)

// egressCheckPassword is the proxy password of these tests; no output may
// show it.
const egressCheckPassword = "ch3ck-s3cret"

// egressCheckRig is an APNs and an FCM look-alike with the credentials
// they trust.
type egressCheckRig struct {
	apple  *sandbox.APNs
	google *sandbox.FCM
	creds  sandbox.Credentials
}

func newEgressCheckRig(t *testing.T) egressCheckRig {
	t.Helper()
	apple, google := sandbox.NewAPNs(), sandbox.NewFCM()
	t.Cleanup(apple.Close)
	t.Cleanup(google.Close)
	creds, err := sandbox.WriteCredentials(t.TempDir(), apple, google)
	if err != nil {
		t.Fatal(err)
	}
	// Apple's answer to the check's push.
	apple.KillToken(strings.Repeat("0", 64), "BadDeviceToken")
	return egressCheckRig{apple: apple, google: google, creds: creds}
}

// config is a relay config for both look-alikes; egress and keyID are put
// in as they are.
func (r egressCheckRig) config(t *testing.T, egressYAML, keyID string) *relay.Config {
	t.Helper()
	yaml := fmt.Sprintf(`
apps:
  - platform: apple_rn
    apns: {topic: %s, auth_key_file: %s, key_id: %s, team_id: %s, endpoint: "%s"}
  - platform: android_rn
    fcm: {service_account_file: %s, endpoint: "%s"}
egress:
%s
`, r.creds.Topic, r.creds.APNsKeyFile, keyID, r.creds.TeamID, r.apple.URL(),
		r.creds.ServiceAccountFile, r.google.URL(), egressYAML)
	cfg, err := relay.ParseConfig([]byte(yaml), nil)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	return cfg
}

func TestCheckEgress(t *testing.T) {
	r := newEgressCheckRig(t)
	proxy := egresstest.NewHTTP(t, egresstest.Options{User: "relay", Password: egressCheckPassword})
	socks := egresstest.NewSOCKS5(t, egresstest.Options{User: "relay", Password: egressCheckPassword})
	apnsAddr, fcmAddr := strings.TrimPrefix(r.apple.URL(), "https://"), strings.TrimPrefix(r.google.URL(), "https://")
	egressYAML := func(proxyURL string) string {
		return fmt.Sprintf("  proxy: %q\n  source_address: 127.0.0.2\n  ca_file: %s", proxyURL, r.creds.CAFile)
	}
	wrong := url.UserPassword("relay", "wr0ng-"+egressCheckPassword)

	for _, tt := range []struct {
		name   string
		egress string
		keyID  string
		proxy  *egresstest.Proxy // its tunnels must come from 127.0.0.2
		err    string            // "" for success
		want   []string          // in the report
	}{
		{
			name: "direct", egress: egressYAML(""), keyID: r.creds.KeyID,
			want: []string{
				apnsAddr[strings.Index(apnsAddr, ":")+1:] + "  direct from 127.0.0.2  ok",
				"apps[0] apple_rn: APNs credentials  a push to an all-zero device token was refused with BadDeviceToken",
				"apps[1] android_rn: OAuth token",
				"all 2 host(s) can be reached as configured",
			},
		},
		{
			name: "through a CONNECT proxy", egress: egressYAML(proxy.URL()), keyID: r.creds.KeyID, proxy: proxy,
			want: []string{
				"via http://" + proxy.Addr() + " (CONNECT) from 127.0.0.2  ok",
				"egress: through http://" + proxy.Addr() + " (egress.proxy), from source address 127.0.0.2",
				"all 2 host(s) can be reached as configured",
			},
		},
		{
			name: "through a SOCKS5 proxy", egress: egressYAML(socks.URL()), keyID: r.creds.KeyID, proxy: socks,
			want: []string{"via socks5://" + socks.Addr() + " (SOCKS5) from 127.0.0.2  ok"},
		},
		{
			name: "wrong proxy password", egress: egressYAML(proxy.URLWith(wrong)), keyID: r.creds.KeyID, proxy: proxy,
			err:  "2 of 2 host(s) cannot be reached as configured: 127.0.0.1:",
			want: []string{"FAIL at connect  proxy refused CONNECT: 407, check egress.proxy credentials"},
		},
		{
			name: "key Apple does not know", egress: egressYAML(""), keyID: "WRONGKEY00",
			err: "1 of 2 host(s) cannot be reached as configured: " + apnsAddr,
			want: []string{
				"FAIL at apps[0] apple_rn: APNs credentials  the way to Apple works, but Apple refused apps[0]'s push",
				"InvalidProviderToken",
			},
		},
		{
			name: "FCM host outside allowed_hosts", egress: egressYAML("") + "\n  allowed_hosts: [localhost]", keyID: r.creds.KeyID,
			err:  "2 of 2 host(s) cannot be reached as configured",
			want: []string{"FAIL at allowlist  add 127.0.0.1 to egress.allowed_hosts"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := egresscheck.CheckEgress(context.Background(), r.config(t, tt.egress, tt.keyID), &out)
			report := out.String()
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("CheckEgress = %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("CheckEgress = %v, want %q", err, tt.err)
			}
			// Column widths vary with the ports: compare words.
			words := func(s string) string { return strings.Join(strings.Fields(s), " ") }
			for _, w := range tt.want {
				if !strings.Contains(words(report), words(w)) {
					t.Errorf("the report does not say %q", w)
				}
			}
			if strings.Contains(report, egressCheckPassword) || (err != nil && strings.Contains(err.Error(), egressCheckPassword)) {
				t.Errorf("the proxy password shows")
			}
			if tt.proxy != nil {
				for _, req := range tt.proxy.Requests() {
					if req.Source != "127.0.0.2" {
						t.Errorf("the proxy saw a request from %s", req.Source)
					}
				}
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("report:\n%s", report)
			}
		})
	}
	// The APNs check went over HTTP/2, to the all-zero token; the FCM
	// check fetched tokens and sent nothing.
	for _, req := range r.apple.Requests() {
		if req.Proto != "HTTP/2.0" || req.Token != strings.Repeat("0", 64) {
			t.Errorf("APNs saw %s for %s", req.Proto, req.Token)
		}
	}
	if r.google.TokenFetches() != 4 || r.google.Delivered() != 0 || r.apple.Delivered() != 0 {
		t.Errorf("token fetches %d, FCM delivered %d, APNs delivered %d", r.google.TokenFetches(), r.google.Delivered(), r.apple.Delivered())
	}
	if n := proxy.Tunnels(fcmAddr); n < 1 {
		t.Errorf("%d tunnels to FCM through the proxy", n)
	}
}
