package egress_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pushrelay/pushrelay/providers/egress"
)

func TestNewNamesTheBadKey(t *testing.T) {
	for _, tt := range []struct {
		cfg  egress.Config
		want string
	}{
		{egress.Config{Proxy: "ftp://proxy:21"}, `egress.proxy: scheme "ftp" is not supported`},
		{egress.Config{Proxy: "http://"}, "egress.proxy: the URL has no host"},
		{egress.Config{Proxy: "http://user:s3cret@proxy:3128/%zz"}, "egress.proxy: not a valid URL"},
		{egress.Config{SourceAddress: "eth0"}, `egress.source_address: "eth0" is not an IP address`},
		{egress.Config{CAFile: "/nonexistent/ca.pem"}, "egress.ca_file:"},
	} {
		_, err := egress.New(tt.cfg, nil, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error shows the proxy password: %v", err)
		}
	}
}

func TestAllowlistRefusesBeforeDialing(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()

	var denied []string
	eg, err := egress.New(egress.Config{}, []string{"localhost"}, func(h string) { denied = append(denied, h) })
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: eg.Transport()}
	_, err = c.Get(srv.URL) // 127.0.0.1: not allowed
	if !errors.Is(err, egress.ErrHostNotAllowed) || hits.Load() != 0 || len(denied) != 1 || denied[0] != "127.0.0.1" {
		t.Errorf("err %v, hits %d, denied %v", err, hits.Load(), denied)
	}

	// An explicit allowed_hosts replaces the default list.
	eg, _ = egress.New(egress.Config{AllowedHosts: []string{"127.0.0.1"}}, []string{"localhost"}, nil)
	resp, err := (&http.Client{Transport: eg.Transport()}).Get(srv.URL)
	if err != nil || hits.Load() != 1 {
		t.Fatalf("allowed host: %v, hits %d", err, hits.Load())
	}
	resp.Body.Close()
	if eg.Allowed("localhost") {
		t.Error("the default list still applies next to allowed_hosts")
	}
}
