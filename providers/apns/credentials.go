package apns

import (
	"bytes"
	"crypto"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sideshow/apns2/certificate"
	"github.com/sideshow/apns2/token"
	"golang.org/x/crypto/pkcs12"
)

// Every error below names the config key at fault and never holds a
// password or key material: library errors that could quote file content
// are replaced, not wrapped.

// loadToken reads the .p8 signing key of token auth and checks that it can
// sign a provider token.
func loadToken(cfg Config) (*token.Token, error) {
	raw, err := os.ReadFile(cfg.AuthKeyFile)
	if err != nil {
		return nil, fmt.Errorf("apns.auth_key_file: %w", err)
	}
	key, err := token.AuthKeyFromBytes(raw)
	switch {
	case errors.Is(err, token.ErrAuthKeyNotPem):
		return nil, fmt.Errorf("apns.auth_key_file: %s is not a PEM .p8 key (-----BEGIN PRIVATE KEY-----)", cfg.AuthKeyFile)
	case errors.Is(err, token.ErrAuthKeyNotECDSA):
		return nil, fmt.Errorf("apns.auth_key_file: %s holds a key that is not ECDSA; APNs provider tokens need Apple's P-256 (ES256) key", cfg.AuthKeyFile)
	case err != nil:
		return nil, fmt.Errorf("apns.auth_key_file: %s is not a PKCS#8 private key", cfg.AuthKeyFile)
	case key.Curve != elliptic.P256():
		return nil, fmt.Errorf("apns.auth_key_file: %s holds an ECDSA key that is not P-256; APNs provider tokens are ES256", cfg.AuthKeyFile)
	}
	t := &token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID}
	if _, err := t.Generate(); err != nil {
		return nil, fmt.Errorf("apns.auth_key_file: cannot sign a provider token with %s: %w", cfg.AuthKeyFile, err)
	}
	return t, nil
}

// loadCertificate reads the client certificate and key of certificate auth
// from cfg.CertFile, PEM or PKCS#12 (told apart by content), with the
// password from cfg.CertPasswordFile.
func loadCertificate(cfg Config) (tls.Certificate, error) {
	raw, err := os.ReadFile(cfg.CertFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("apns.cert_file: %w", err)
	}
	password := ""
	if cfg.CertPasswordFile != "" {
		p, err := os.ReadFile(cfg.CertPasswordFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("apns.cert_password_file: %w", err)
		}
		// The file's final line break is not part of the password.
		password = strings.TrimSuffix(strings.TrimSuffix(string(p), "\n"), "\r")
	}
	if isPEM(raw) {
		return certFromPEM(raw, password, cfg.CertPasswordFile != "")
	}
	return certFromP12(raw, password, cfg.CertPasswordFile != "")
}

// isPEM reports whether data starts, after white space, with a PEM header.
func isPEM(data []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n\ufeff"), []byte("-----BEGIN"))
}

func certFromPEM(data []byte, password string, havePassword bool) (tls.Certificate, error) {
	encrypted := false
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" {
			return tls.Certificate{}, errors.New(`apns.cert_file: the private key is PKCS#8-encrypted ("ENCRYPTED PRIVATE KEY"), which Go cannot read; ` +
				`write it unencrypted next to the certificate: openssl pkcs12 -in cert.p12 -out cert.pem -nodes (or openssl pkey -in cert.pem)`)
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") && x509.IsEncryptedPEMBlock(block) { // legacy "Proc-Type: 4,ENCRYPTED" PEM
			encrypted = true
		}
	}
	cert, err := certificate.FromPemBytes(data, password)
	switch {
	case err == nil:
	case errors.Is(err, certificate.ErrNoCertificate):
		return tls.Certificate{}, errors.New("apns.cert_file: the PEM file holds no CERTIFICATE block")
	case errors.Is(err, certificate.ErrNoPrivateKey):
		return tls.Certificate{}, errors.New("apns.cert_file: the PEM file holds no private key; it must hold the certificate and its key")
	case encrypted && !havePassword:
		return tls.Certificate{}, errors.New("apns.cert_password_file: required: the private key in apns.cert_file is encrypted")
	case encrypted:
		return tls.Certificate{}, errors.New("apns.cert_password_file: wrong password for the private key in apns.cert_file")
	default:
		return tls.Certificate{}, errors.New("apns.cert_file: the private key is neither PKCS#1, SEC 1 nor PKCS#8")
	}
	return assemble(cert.Certificate, cert.PrivateKey)
}

func certFromP12(data []byte, password string, havePassword bool) (tls.Certificate, error) {
	blocks, err := pkcs12.ToPEM(data, password)
	if err != nil {
		return tls.Certificate{}, p12Error(err, havePassword)
	}
	var (
		ders [][]byte
		key  crypto.PrivateKey
	)
	for _, b := range blocks {
		switch b.Type {
		case "CERTIFICATE":
			ders = append(ders, b.Bytes)
		case "PRIVATE KEY":
			// ToPEM re-encodes keys as PKCS#1 (RSA) or SEC 1 (ECDSA).
			if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
				key = k
			} else if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
				key = k
			} else {
				return tls.Certificate{}, errors.New("apns.cert_file: the PKCS#12 file's private key is neither RSA nor ECDSA")
			}
		}
	}
	if len(ders) == 0 {
		return tls.Certificate{}, errors.New("apns.cert_file: the PKCS#12 file holds no certificate")
	}
	if key == nil {
		return tls.Certificate{}, errors.New("apns.cert_file: the PKCS#12 file holds no private key")
	}
	return assemble(ders, key)
}

// p12Error explains why golang.org/x/crypto/pkcs12 could not read a file.
func p12Error(err error, havePassword bool) error {
	var notImpl pkcs12.NotImplementedError
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword) && !havePassword:
		return errors.New("apns.cert_password_file: required: the PKCS#12 file in apns.cert_file is password-protected")
	case errors.Is(err, pkcs12.ErrIncorrectPassword):
		return errors.New("apns.cert_password_file: wrong password for the PKCS#12 file in apns.cert_file")
	case errors.As(err, &notImpl), strings.Contains(err.Error(), "is not supported"):
		// SHA-256 MAC, PBES2/AES: what OpenSSL 3 and recent macOS export.
		return errors.New(`apns.cert_file: the PKCS#12 file uses an encryption Go cannot read (AES/PBES2); ` +
			`re-export it with "openssl pkcs12 -legacy" or convert it to PEM: openssl pkcs12 -in cert.p12 -out cert.pem -nodes`)
	case strings.HasPrefix(err.Error(), "pkcs12: error reading P12 data"):
		return errors.New("apns.cert_file: neither PEM (-----BEGIN ...) nor PKCS#12 (.p12/.pfx)")
	}
	return errors.New("apns.cert_file: cannot read the PKCS#12 file; convert it to PEM: openssl pkcs12 -in cert.p12 -out cert.pem -nodes")
}

// assemble builds the TLS identity: the certificate matching key becomes
// the leaf, the others its chain.
func assemble(ders [][]byte, key crypto.PrivateKey) (tls.Certificate, error) {
	signer, ok := key.(crypto.Signer)
	if !ok {
		return tls.Certificate{}, errors.New("apns.cert_file: unsupported private key type")
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return tls.Certificate{}, errors.New("apns.cert_file: unsupported private key type")
	}
	for i, der := range ders {
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("apns.cert_file: certificate %d cannot be parsed: %w", i+1, err)
		}
		if !pub.Equal(leaf.PublicKey) {
			continue
		}
		chain := make([][]byte, 0, len(ders))
		chain = append(chain, der)
		chain = append(chain, ders[:i]...)
		chain = append(chain, ders[i+1:]...)
		return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
	}
	return tls.Certificate{}, errors.New("apns.cert_file: the private key does not match the certificate")
}
