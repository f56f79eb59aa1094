package appconfig

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
)

// defaultTokenURI is Google's OAuth 2.0 token endpoint, used when the
// service account names none.
const defaultTokenURI = "https://oauth2.googleapis.com/token"

// ServiceAccount is what the FCM provider needs of a service account's JSON
// key (apps[].fcm.service_account_file).
type ServiceAccount struct {
	Type        string `json:"type"`
	ProjectID   string `json:"project_id"`
	PrivateKey  string `json:"private_key"`
	ClientEmail string `json:"client_email"`
	TokenURI    string `json:"token_uri"`
	// ProjectInfo is only there to recognise an app's google-services.json,
	// a common mistake.
	ProjectInfo json.RawMessage `json:"project_info"`

	Raw []byte `json:"-"` // the file, for the oauth2 library
}

// TokenEndpoint returns the OAuth 2.0 token endpoint the service account
// uses: its token_uri, or Google's.
func (sa *ServiceAccount) TokenEndpoint() string {
	if sa.TokenURI == "" {
		return defaultTokenURI
	}
	return sa.TokenURI
}

// LoadServiceAccount reads and checks the service account JSON key at path.
// Errors start with "fcm.service_account_file: " and never quote the key.
func LoadServiceAccount(path string) (*ServiceAccount, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fcm.service_account_file: %w", err)
	}
	sa := &ServiceAccount{Raw: raw}
	if err := json.Unmarshal(raw, sa); err != nil {
		return nil, fmt.Errorf("fcm.service_account_file: %s is not valid JSON: %w", path, jsonProblem(err))
	}
	if err := sa.check(); err != nil {
		return nil, fmt.Errorf("fcm.service_account_file: %w", err)
	}
	return sa, nil
}

// check validates the fields the provider relies on.
func (sa *ServiceAccount) check() error {
	switch {
	case sa.Type == "" && len(sa.ProjectInfo) > 0:
		return errors.New(`not a service account JSON (this looks like an app's google-services.json; ` +
			`download a key from Firebase console > Project settings > Service accounts)`)
	case sa.Type != "service_account":
		return fmt.Errorf("not a service account JSON (type is %q)", sa.Type)
	case sa.ProjectID == "":
		return errors.New("project_id is missing")
	case sa.ClientEmail == "":
		return errors.New("client_email is missing")
	case sa.PrivateKey == "":
		return errors.New("private_key is missing")
	}
	if err := checkPrivateKey(sa.PrivateKey); err != nil {
		return err
	}
	if sa.TokenURI != "" {
		u, err := url.Parse(sa.TokenURI)
		switch {
		case err != nil || u.Hostname() == "":
			return errors.New("token_uri is not a valid URL")
		case u.Scheme != "https":
			return errors.New("token_uri must be an https:// URL")
		}
	}
	return nil
}

// checkPrivateKey parses the key as the oauth2 library will (PKCS#8, or
// PKCS#1, RSA), so a broken key fails at start-up rather than on the first
// send. The errors never hold key material.
func checkPrivateKey(key string) error {
	block, _ := pem.Decode([]byte(key))
	if block == nil {
		return errors.New("private_key is not a valid PEM key")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if _, ok := k.(*rsa.PrivateKey); !ok {
			return errors.New("private_key is not an RSA key")
		}
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
		return errors.New("private_key is not a valid PEM key (neither PKCS#8 nor PKCS#1 RSA)")
	}
	return nil
}

// jsonProblem describes a decoding error without quoting the input.
func jsonProblem(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te) && te.Field == "":
		return fmt.Errorf("the file holds a JSON %s, want an object", te.Value)
	case errors.As(err, &te):
		return fmt.Errorf("%s is a JSON %s, want a string", te.Field, te.Value)
	}
	return errors.New("cannot decode it")
}
