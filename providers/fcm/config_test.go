package fcm_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/providers/sandbox"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  fcm.Config
		want []string // substrings of the error, in order; none = valid
	}{
		{"minimal", fcm.Config{ServiceAccountFile: "firebase.json"}, nil},
		{"endpoint", fcm.Config{ServiceAccountFile: "f.json", Endpoint: "https://127.0.0.1:8443/"}, nil},
		{"gateway path", fcm.Config{ServiceAccountFile: "f.json", Endpoint: "https://gw.example.com/google"}, nil},
		{"no file", fcm.Config{}, []string{"fcm.service_account_file: required"}},
		{"http endpoint", fcm.Config{ServiceAccountFile: "f.json", Endpoint: "http://fcm.googleapis.com"},
			[]string{"fcm.endpoint: must be an https:// URL"}},
		{"endpoint with /v1", fcm.Config{ServiceAccountFile: "f.json", Endpoint: "https://fcm.googleapis.com/v1"},
			[]string{"fcm.endpoint: give the base URL without /v1"}},
		{"endpoint with password", fcm.Config{ServiceAccountFile: "f.json", Endpoint: "https://u:hunter2@gw.example.com"},
			[]string{"fcm.endpoint: must not carry user:password"}},
		{"endpoint not a URL", fcm.Config{ServiceAccountFile: "f.json", Endpoint: "https://gw example.com:x"},
			[]string{"fcm.endpoint: not a valid URL"}},
		{"both wrong", fcm.Config{Endpoint: "ftp://x"},
			[]string{"fcm.service_account_file: required", "fcm.endpoint: must be an https:// URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			msg := err.Error()
			for _, w := range tc.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("Validate() = %q, want it to contain %q", msg, w)
				}
				msg = msg[i+len(w):]
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error quotes the password: %v", err)
			}
		})
	}
}

func TestHosts(t *testing.T) {
	google := sandbox.NewFCM()
	defer google.Close()
	creds, err := sandbox.WriteCredentials(t.TempDir(), nil, google)
	if err != nil {
		t.Fatal(err)
	}
	googleCreds, err := sandbox.WriteCredentials(t.TempDir(), nil, nil) // token_uri is Google's
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  fcm.Config
		want []string
	}{
		{"defaults", fcm.Config{ServiceAccountFile: googleCreds.ServiceAccountFile},
			[]string{"fcm.googleapis.com", "oauth2.googleapis.com"}},
		{"sandbox token endpoint", fcm.Config{ServiceAccountFile: creds.ServiceAccountFile},
			[]string{"fcm.googleapis.com", "127.0.0.1"}},
		{"one host for both", fcm.Config{ServiceAccountFile: creds.ServiceAccountFile, Endpoint: google.URL()},
			[]string{"127.0.0.1"}},
		{"gateway", fcm.Config{ServiceAccountFile: googleCreds.ServiceAccountFile, Endpoint: "https://FCM-GW.Example.com:8443/"},
			[]string{"fcm-gw.example.com", "oauth2.googleapis.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.Hosts()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Hosts() = %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := (fcm.Config{ServiceAccountFile: "no-such-firebase.json"}).Hosts(); err == nil ||
		err.Error() != "fcm.service_account_file: open no-such-firebase.json: no such file or directory" {
		t.Errorf("Hosts() of a missing file: %v", err)
	}
}

// TestNewErrors checks that a broken service account is refused at start-up
// with an error naming the key, and that no error quotes the private key.
func TestNewErrors(t *testing.T) {
	creds, err := sandbox.WriteCredentials(t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(creds.ServiceAccountFile)
	if err != nil {
		t.Fatal(err)
	}
	var good map[string]string
	if err := json.Unmarshal(raw, &good); err != nil {
		t.Fatal(err)
	}
	keyBody := strings.Split(good["private_key"], "\n")[1] // a line of the key's base64
	edit := func(kv ...string) string {
		m := make(map[string]string, len(good))
		for k, v := range good {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<delete>" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}))

	dir := t.TempDir()
	eg, err := egress.New(egress.Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"authorized user", edit("type", "authorized_user"),
			`fcm.service_account_file: not a service account JSON (type is "authorized_user")`},
		{"google-services.json", `{"project_info":{"project_number":"1","project_id":"p"},"client":[]}`,
			"fcm.service_account_file: not a service account JSON (this looks like an app's google-services.json"},
		{"no project", edit("project_id", "<delete>"), "fcm.service_account_file: project_id is missing"},
		{"no client email", edit("client_email", ""), "fcm.service_account_file: client_email is missing"},
		{"no key", edit("private_key", "<delete>"), "fcm.service_account_file: private_key is missing"},
		{"key not PEM", edit("private_key", keyBody), "fcm.service_account_file: private_key is not a valid PEM key"},
		{"key truncated", edit("private_key", good["private_key"][:200]+"\n-----END PRIVATE KEY-----\n"),
			"fcm.service_account_file: private_key is not a valid PEM key"},
		{"EC key", edit("private_key", ecPEM), "fcm.service_account_file: private_key is not an RSA key"},
		{"http token_uri", edit("token_uri", "http://oauth2.googleapis.com/token"),
			"fcm.service_account_file: token_uri must be an https:// URL"},
		{"not JSON", "-----BEGIN PRIVATE KEY-----\n" + keyBody, "is not valid JSON: syntax error at byte 2"},
		{"wrong type", `{"type":"service_account","project_id":42}`,
			"is not valid JSON: project_id is a JSON number, want a string"},
		{"array", `[]`, "is not valid JSON: the file holds a JSON array, want an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := fcm.Config{ServiceAccountFile: path}
			_, err := fcm.New(context.Background(), cfg, eg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New() = %v, want an error containing %q", err, tc.want)
			}
			if _, herr := cfg.Hosts(); herr == nil || herr.Error() != err.Error() {
				t.Errorf("Hosts() = %v, want the same error as New", herr)
			}
			if strings.Contains(err.Error(), keyBody) || strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error quotes the private key: %v", err)
			}
		})
	}

	missing := filepath.Join(dir, "firebase.json")
	if _, err := fcm.New(context.Background(), fcm.Config{ServiceAccountFile: missing}, eg); err == nil ||
		err.Error() != "fcm.service_account_file: open "+missing+": no such file or directory" {
		t.Errorf("New() of a missing file: %v", err)
	}
	if _, err := fcm.New(context.Background(), fcm.Config{}, eg); err == nil ||
		!strings.HasPrefix(err.Error(), "fcm.service_account_file: required") {
		t.Errorf("New() without a file: %v", err)
	}
	p, err := fcm.New(context.Background(), fcm.Config{ServiceAccountFile: creds.ServiceAccountFile}, eg)
	if err != nil {
		t.Fatalf("New() with a good service account: %v", err)
	}
	if p.ProjectID() != creds.ProjectID {
		t.Errorf("ProjectID() = %q, want %q", p.ProjectID(), creds.ProjectID)
	}
}
