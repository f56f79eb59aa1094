package apns

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gopkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/pushrelay/pushrelay/providers/egress"
)

const testPassword = "pw-Sekr1t-42"

// testIdentity is a client certificate and its key.
type testIdentity struct {
	key  crypto.Signer
	cert *x509.Certificate
}

var (
	rsaKeyOnce sync.Once
	rsaKey     *rsa.PrivateKey
)

// testRSAKey returns one RSA key per test binary: generating is slow under -race.
func testRSAKey(t testing.TB) *rsa.PrivateKey {
	rsaKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

func newECKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newIdentity makes a self-signed certificate like Apple's push certificates.
func newIdentity(t testing.TB, key crypto.Signer, cn string) testIdentity {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testIdentity{key: key, cert: cert}
}

func (id testIdentity) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.cert.Raw})
}

func (id testIdentity) keyDER(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(id.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (id testIdentity) pem(t testing.TB) []byte {
	return append(id.certPEM(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: id.keyDER(t)})...)
}

// encryptedPEM is the certificate followed by its key in legacy encrypted
// PEM ("Proc-Type: 4,ENCRYPTED"), as `openssl rsa -aes256` writes it.
func (id testIdentity) encryptedPEM(t testing.TB, password string) []byte {
	t.Helper()
	rk, ok := id.key.(*rsa.PrivateKey)
	if !ok {
		t.Fatal("encryptedPEM needs an RSA key")
	}
	// x509.EncryptPEMBlock is deprecated, but this legacy format is what must be read.
	block, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk), []byte(password), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	return append(id.certPEM(), pem.EncodeToMemory(block)...)
}

func (id testIdentity) p12(t testing.TB, enc *gopkcs12.Encoder, password string) []byte {
	t.Helper()
	data, err := enc.Encode(id.key, id.cert, nil, password)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func testEgress(t testing.TB) *egress.Egress {
	t.Helper()
	eg, err := egress.New(egress.Config{}, []string{"127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return eg
}

func TestNewCredentialErrors(t *testing.T) {
	dir := t.TempDir()
	id := newIdentity(t, testRSAKey(t), "Apple Push Services: "+testTopic)
	other := newIdentity(t, newECKey(t, elliptic.P256()), "someone else")
	pass := writeFile(t, dir, "cert.pass", []byte(testPassword+"\n"))
	wrongPass := writeFile(t, dir, "wrong.pass", []byte("not-the-password\n"))
	p8 := func(key any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	tokenCfg := func(keyFile string) Config {
		return Config{Topic: testTopic, AuthKeyFile: keyFile, KeyID: "ABC123DEFG", TeamID: "TEAM123456"}
	}
	certCfg := func(certFile, passFile string) Config {
		return Config{Topic: testTopic, CertFile: certFile, CertPasswordFile: passFile}
	}
	file := func(name string, data []byte) string { return writeFile(t, dir, name, data) }

	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"invalid config", Config{Topic: testTopic}, "apns.auth_key_file: required"},
		{"missing .p8", tokenCfg(filepath.Join(dir, "AuthKey.p8")),
			"apns.auth_key_file: open " + filepath.Join(dir, "AuthKey.p8") + ": no such file or directory"},
		{".p8 not PEM", tokenCfg(file("garbage.p8", []byte("not a key"))), "apns.auth_key_file: " + dir},
		{".p8 holds RSA", tokenCfg(file("rsa.p8", p8(testRSAKey(t)))), "is not ECDSA"},
		{".p8 holds P-384", tokenCfg(file("p384.p8", p8(newECKey(t, elliptic.P384())))), "is not P-256"},
		{".p8 in PKCS#1", tokenCfg(file("pkcs1.p8", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(testRSAKey(t))}))),
			"is not a PKCS#8 private key"},

		{"missing cert", certCfg(filepath.Join(dir, "nope.pem"), ""), "apns.cert_file: open "},
		{"missing password file", certCfg(file("ok.pem", id.pem(t)), filepath.Join(dir, "nope.pass")), "apns.cert_password_file: open "},
		{"PEM without certificate", certCfg(file("key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: id.keyDER(t)})), ""),
			"apns.cert_file: the PEM file holds no CERTIFICATE block"},
		{"PEM without key", certCfg(file("cert-only.pem", id.certPEM()), ""), "apns.cert_file: the PEM file holds no private key"},
		{"PEM key of another certificate", certCfg(file("mismatch.pem", append(id.certPEM(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: other.keyDER(t)})...)), ""),
			"apns.cert_file: the private key does not match the certificate"},
		{"encrypted PEM without password", certCfg(file("enc1.pem", id.encryptedPEM(t, testPassword)), ""),
			"apns.cert_password_file: required: the private key in apns.cert_file is encrypted"},
		{"encrypted PEM, wrong password", certCfg(file("enc2.pem", id.encryptedPEM(t, testPassword)), wrongPass),
			"apns.cert_password_file: wrong password for the private key in apns.cert_file"},
		{"PKCS#8-encrypted PEM", certCfg(file("pkcs8enc.pem", append(id.certPEM(), pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x00}})...)), pass),
			`apns.cert_file: the private key is PKCS#8-encrypted ("ENCRYPTED PRIVATE KEY"), which Go cannot read`},
		{"PKCS#12 modern encryption", certCfg(file("modern.p12", id.p12(t, gopkcs12.Modern, testPassword)), pass),
			`apns.cert_file: the PKCS#12 file uses an encryption Go cannot read (AES/PBES2); re-export it with "openssl pkcs12 -legacy" or convert it to PEM: openssl pkcs12 -in cert.p12 -out cert.pem -nodes`},
		{"PKCS#12 wrong password", certCfg(file("legacy1.p12", id.p12(t, gopkcs12.LegacyDES, testPassword)), wrongPass),
			"apns.cert_password_file: wrong password for the PKCS#12 file in apns.cert_file"},
		{"PKCS#12 without password", certCfg(file("legacy2.p12", id.p12(t, gopkcs12.LegacyDES, testPassword)), ""),
			"apns.cert_password_file: required: the PKCS#12 file in apns.cert_file is password-protected"},
		{"neither PEM nor PKCS#12", certCfg(file("garbage.p12", []byte("hello, world")), ""),
			"apns.cert_file: neither PEM (-----BEGIN ...) nor PKCS#12 (.p12/.pfx)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := New(c.cfg, testEgress(t))
			if err == nil {
				p.Close()
				t.Fatalf("New() succeeded, want an error containing %q", c.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) {
				t.Errorf("New() = %q,\nwant it to contain %q", msg, c.want)
			}
			for _, secret := range []string{testPassword, "not-the-password", "MII", "MIG", "-----END"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error holds secret material %q: %s", secret, msg)
				}
			}
		})
	}
}

func TestNewCertificate(t *testing.T) {
	dir := t.TempDir()
	rsaID := newIdentity(t, testRSAKey(t), "Apple Push Services: "+testTopic)
	ecID := newIdentity(t, newECKey(t, elliptic.P256()), "Apple Development IOS Push Services: "+testTopic)
	ca := newIdentity(t, newECKey(t, elliptic.P256()), "Apple Worldwide Developer Relations")
	pass := writeFile(t, dir, "cert.pass", []byte(testPassword+"\r\n"))
	emptyPass := writeFile(t, dir, "empty.pass", nil)

	for _, c := range []struct {
		name     string
		id       testIdentity
		data     []byte
		passFile string
	}{
		{"PEM", rsaID, rsaID.pem(t), ""},
		{"PEM, chain before the leaf", ecID, append(ca.certPEM(), ecID.pem(t)...), ""},
		{"PEM, encrypted key", rsaID, rsaID.encryptedPEM(t, testPassword), pass},
		{"PKCS#12 legacy 3DES", rsaID, rsaID.p12(t, gopkcs12.LegacyDES, testPassword), pass},
		{"PKCS#12 legacy RC2, ECDSA key", ecID, ecID.p12(t, gopkcs12.LegacyRC2, testPassword), pass},
		{"PKCS#12 with empty password", rsaID, rsaID.p12(t, gopkcs12.LegacyDES, ""), emptyPass},
		{"PKCS#12 with empty password, no password file", rsaID, rsaID.p12(t, gopkcs12.LegacyDES, ""), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A misleading extension: the format is told by content.
			path := writeFile(t, dir, strings.NewReplacer(" ", "_", ",", "", "#", "").Replace(c.name)+".crt", c.data)
			p, err := New(Config{Topic: testTopic, CertFile: path, CertPasswordFile: c.passFile}, testEgress(t))
			if err != nil {
				t.Fatalf("New() = %v", err)
			}
			defer p.Close()
			if got, want := p.CertExpiry(), c.id.cert.NotAfter; !got.Equal(want) {
				t.Errorf("CertExpiry() = %v, want %v", got, want)
			}
			leaf := p.cert.Leaf
			if leaf == nil || leaf.Subject.CommonName != c.id.cert.Subject.CommonName {
				t.Errorf("client certificate leaf = %v, want %q", leaf, c.id.cert.Subject.CommonName)
			}
		})
	}
}

func TestNewToken(t *testing.T) {
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(newECKey(t, elliptic.P256()))
	if err != nil {
		t.Fatal(err)
	}
	key := writeFile(t, dir, "AuthKey_ABC123DEFG.p8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	p, err := New(Config{Topic: testTopic, AuthKeyFile: key, KeyID: "ABC123DEFG", TeamID: "TEAM123456", Development: true}, testEgress(t))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	defer p.Close()
	if !p.CertExpiry().IsZero() {
		t.Errorf("CertExpiry() = %v, want the zero time for token auth", p.CertExpiry())
	}
	if got := p.url.String() + p.path; got != "https://api.sandbox.push.apple.com/3/device/" {
		t.Errorf("gateway = %q", got)
	}
	if p.token == nil || p.token.Bearer == "" {
		t.Error("no provider token was signed")
	}
}
