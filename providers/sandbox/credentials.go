package sandbox

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultTopic is the APNs topic (bundle id) of the client certificate
// WriteCredentials makes: Mattermost's mobile app.
const DefaultTopic = "com.mattermost.rn"

// DefaultProjectID is the Firebase project of the service account
// WriteCredentials makes.
const DefaultProjectID = "pushrelay-sandbox"

// Credentials are files that let a real relay config talk to the sandboxes.
type Credentials struct {
	// Dir is the directory holding the files.
	Dir string
	// CAFile is a PEM file with the sandboxes' server certificate (they all
	// share one), for egress.ca_file.
	CAFile string
	// APNsKeyFile is a fresh P-256 key in PKCS#8 PEM ("PRIVATE KEY"), like
	// Apple's AuthKey_XXXXXXXXXX.p8.
	APNsKeyFile string
	// KeyID and TeamID are the 10-character ids that go with APNsKeyFile.
	KeyID, TeamID string
	// APNsCertFile is a PEM client certificate followed by its unencrypted
	// RSA private key, for APNs certificate auth; its CN is
	// "Apple Push Services: " + Topic.
	APNsCertFile string
	// Topic is the topic named by the certificate in APNsCertFile
	// (DefaultTopic).
	Topic string
	// ServiceAccountFile is a Google service-account JSON key whose token_uri
	// is the FCM sandbox's TokenURL.
	ServiceAccountFile string
	// ProjectID is the service account's project_id (DefaultProjectID).
	ProjectID string
	// ClientEmail is the service account's client_email.
	ClientEmail string
}

// WriteCredentials writes fresh credentials into dir (created if needed;
// files are 0600) and makes apns and fcm trust them (TrustKey) when they
// are not nil. Without fcm, the service account's token_uri is Google's.
func WriteCredentials(dir string, apns *APNs, fcm *FCM) (Credentials, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Credentials{}, err
	}
	c := Credentials{
		Dir:                dir,
		CAFile:             filepath.Join(dir, "sandbox-ca.pem"),
		KeyID:              randomID(),
		TeamID:             randomID(),
		APNsCertFile:       filepath.Join(dir, "apns-cert.pem"),
		Topic:              DefaultTopic,
		ServiceAccountFile: filepath.Join(dir, "firebase-service-account.json"),
		ProjectID:          DefaultProjectID,
	}
	c.APNsKeyFile = filepath.Join(dir, "AuthKey_"+c.KeyID+".p8")
	c.ClientEmail = "pushrelay@" + c.ProjectID + ".iam.gserviceaccount.com"

	if err := os.WriteFile(c.CAFile, certPEM(), 0o600); err != nil {
		return Credentials{}, err
	}
	apnsKey, err := writeAPNsKey(c.APNsKeyFile)
	if err != nil {
		return Credentials{}, fmt.Errorf("sandbox: APNs key: %w", err)
	}
	if err := writeAPNsCert(c.APNsCertFile, c.Topic); err != nil {
		return Credentials{}, fmt.Errorf("sandbox: APNs certificate: %w", err)
	}
	tokenURI := "https://oauth2.googleapis.com/token"
	if fcm != nil {
		tokenURI = fcm.TokenURL()
	}
	saKey, err := writeServiceAccount(c, tokenURI)
	if err != nil {
		return Credentials{}, fmt.Errorf("sandbox: service account: %w", err)
	}
	if apns != nil {
		apns.TrustKey(c.KeyID, c.TeamID, &apnsKey.PublicKey)
	}
	if fcm != nil {
		fcm.TrustKey(c.ClientEmail, &saKey.PublicKey)
	}
	return c, nil
}

// writeAPNsKey writes a new P-256 key as Apple does: PKCS#8, "PRIVATE KEY".
func writeAPNsKey(path string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return key, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeAPNsCert writes a self-signed client certificate for topic followed
// by its RSA key (PKCS#1), the layout of an exported Apple push certificate.
func writeAPNsCert(path, topic string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         apnsCertPrefix + topic,
			OrganizationalUnit: []string{"TEAMSANDBOX"},
			Organization:       []string{"pushrelay sandbox"},
		},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.AddDate(1, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})...)
	return os.WriteFile(path, out, 0o600)
}

// writeServiceAccount writes a service-account JSON key for c with a new
// RSA key, in the layout the Firebase console downloads.
func writeServiceAccount(c Credentials, tokenURI string) (*rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	clientID, err := rand.Int(rand.Reader, new(big.Int).Exp(big.NewInt(10), big.NewInt(20), nil))
	if err != nil {
		return nil, err
	}
	sa := map[string]string{
		"type":                        "service_account",
		"project_id":                  c.ProjectID,
		"private_key_id":              randomHex(20),
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                c.ClientEmail,
		"client_id":                   fmt.Sprintf("1%020d", clientID),
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   tokenURI,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/" + strings.ReplaceAll(c.ClientEmail, "@", "%40"),
		"universe_domain":             "googleapis.com",
	}
	out, err := json.MarshalIndent(sa, "", "  ")
	if err != nil {
		return nil, err
	}
	return key, os.WriteFile(c.ServiceAccountFile, append(out, '\n'), 0o600)
}

// randomID returns a 10-character id of upper-case letters and digits, the
// shape of Apple's key and team ids.
func randomID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 10)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
