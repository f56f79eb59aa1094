package sandbox

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// maxBody bounds what a sandbox reads of a request body.
const maxBody = 1 << 20

// serverCert is the certificate every sandbox of this process serves: fresh,
// self-signed (so it is its own root), valid for the loopback addresses.
var serverCert = sync.OnceValue(func() tlsIdentity {
	id, err := newServerCert()
	if err != nil {
		panic(fmt.Sprintf("sandbox: cannot make a server certificate: %v", err))
	}
	return id
})

type tlsIdentity struct {
	cert tls.Certificate
	pem  []byte // the certificate only
}

func newServerCert() (tlsIdentity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tlsIdentity{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tlsIdentity{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pushrelay sandbox", Organization: []string{"pushrelay sandbox"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tlsIdentity{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tlsIdentity{}, err
	}
	return tlsIdentity{
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// server is the HTTP/2 + TLS listener under a look-alike.
type server struct {
	ts        *httptest.Server
	done      chan struct{} // closed by close: ends pending delays
	closeOnce sync.Once
}

// startServer serves h on 127.0.0.1:random over TLS, offering the ALPN
// protocols protos ("h2" first), and requesting (not requiring) a client
// certificate.
func startServer(h http.Handler, protos []string) *server {
	id := serverCert()
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true
	ts.TLS = &tls.Config{
		Certificates: []tls.Certificate{id.cert},
		ClientAuth:   tls.RequestClientCert,
		NextProtos:   protos,
		MinVersion:   tls.VersionTLS12,
	}
	// Handshake errors of clients that do not trust us are expected in tests;
	// keep them off the demo's terminal.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	return &server{ts: ts, done: make(chan struct{})}
}

func (s *server) url() string { return s.ts.URL }

func (s *server) close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ts.Close()
	})
}

// client returns an HTTP client that trusts the sandbox and speaks HTTP/2.
func (s *server) client() *http.Client { return s.ts.Client() }

// certPEM returns the PEM of the certificate the sandboxes serve.
func certPEM() []byte { return bytes.Clone(serverCert().pem) }

// readBody reads at most maxBody+1 bytes of r's body, so callers can tell an
// oversized body from one that fits.
func readBody(r *http.Request) []byte {
	b, _ := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	return b
}

// writeJSON answers status with v as its JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	w.Write(body)
}

// randomHex returns n random bytes, hex encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newUUID returns a random (version 4) UUID in upper case, like APNs ids.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// abort ends the request without an answer: an HTTP/2 stream reset.
func abort() { panic(http.ErrAbortHandler) }
