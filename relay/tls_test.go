package relay_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay"
)

// pki is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, written as PEM files.
type pki struct {
	caFile, serverCert, serverKey string
	pool                          *x509.CertPool
	client                        tls.Certificate
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, usage x509.ExtKeyUsage, ip net.IP) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if ip != nil {
			tmpl.IPAddresses = []net.IP{ip}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	}
	p := pki{caFile: filepath.Join(dir, "ca.pem"), serverCert: filepath.Join(dir, "server.pem"), serverKey: filepath.Join(dir, "server.key")}
	os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	cert, key := issue("relay", x509.ExtKeyUsageServerAuth, net.ParseIP("127.0.0.1"))
	os.WriteFile(p.serverCert, cert, 0o600)
	os.WriteFile(p.serverKey, key, 0o600)
	cert, key = issue("mattermost", x509.ExtKeyUsageClientAuth, nil)
	p.client, err = tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	return p
}

func TestTLSIngressWithClientCertificates(t *testing.T) {
	apple := sandbox.NewAPNs()
	defer apple.Close()
	creds, err := sandbox.WriteCredentials(t.TempDir(), apple, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newPKI(t)
	cfg := relay.Defaults()
	cfg.Listen, cfg.Metrics.Listen = "127.0.0.1:0", ""
	cfg.TLS = relay.TLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.caFile}
	cfg.Egress.CAFile = creds.CAFile
	cfg.Spool.Dir = t.TempDir()
	yaml := `apps: [{platform: apple_rn, apns: {topic: com.mattermost.rn, auth_key_file: "` + creds.APNsKeyFile +
		`", key_id: ` + creds.KeyID + `, team_id: ` + creds.TeamID + `, endpoint: "` + apple.URL() + `"}}]`
	parsed, err := relay.ParseConfig([]byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Apps = parsed.Apps
	srv, err := relay.NewServer(&cfg, relay.TestProviders, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(t.Context())

	push := func(certs []tls.Certificate) (string, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool, Certificates: certs}}}
		resp, err := c.Post("https://"+srv.Addr()+"/api/v1/send_push", "",
			strings.NewReader(`{"platform":"apple_rn","server_id":"s","device_id":"d","type":"message"}`))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	if _, err := push(nil); err == nil {
		t.Error("a client without a certificate was served")
	}
	other := newPKI(t)
	if _, err := push([]tls.Certificate{other.client}); err == nil {
		t.Error("a client certificate from another CA was accepted")
	}
	body, err := push([]tls.Certificate{p.client})
	if err != nil || !strings.Contains(body, `"status":"OK"`) {
		t.Errorf("good client certificate: %q %v", body, err)
	}
	if apple.Delivered() != 1 {
		t.Errorf("APNs got %d pushes, want 1", apple.Delivered())
	}
	// Over TLS too, a request refused unread gets its answer.
	oversized(t, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}}}},
		"https://"+srv.Addr(), 30)
}

func TestDeployExamplesParse(t *testing.T) {
	files, _ := filepath.Glob("../deploy/examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example configs")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := relay.ParseConfig(data, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func tlsTo(p pki) *tls.Config { return &tls.Config{RootCAs: p.pool} }
