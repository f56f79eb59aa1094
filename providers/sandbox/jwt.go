package sandbox

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
)

// jwt is a compact JWS split into its parts. Nothing in it is trusted until
// verify succeeds.
type jwt struct {
	header map[string]any
	claims map[string]any
	signed string // "header.claims", what the signature covers
	sig    []byte
}

func parseJWT(s string) (*jwt, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	t := &jwt{signed: parts[0] + "." + parts[1]}
	for i, dst := range []*map[string]any{&t.header, &t.claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return nil, err
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	t.sig = sig
	return t, nil
}

// str returns a string header or claim ("" when absent or not a string).
func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// num returns a numeric claim, and whether it was present and numeric.
func num(m map[string]any, key string) (int64, bool) {
	f, ok := m[key].(float64)
	return int64(f), ok
}

// verifyES256 checks an ES256 signature (raw r||s, 64 bytes).
func (t *jwt) verifyES256(pub *ecdsa.PublicKey) bool {
	if str(t.header, "alg") != "ES256" || len(t.sig) != 64 || pub == nil {
		return false
	}
	h := sha256.Sum256([]byte(t.signed))
	r := new(big.Int).SetBytes(t.sig[:32])
	s := new(big.Int).SetBytes(t.sig[32:])
	return ecdsa.Verify(pub, h[:], r, s)
}

// verifyRS256 checks an RS256 (RSASSA-PKCS1-v1_5, SHA-256) signature.
func (t *jwt) verifyRS256(pub *rsa.PublicKey) bool {
	if str(t.header, "alg") != "RS256" || pub == nil {
		return false
	}
	h := sha256.Sum256([]byte(t.signed))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], t.sig) == nil
}
