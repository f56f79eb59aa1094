package fcm_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/providers/sandbox"
)

func TestURLs(t *testing.T) {
	google := sandbox.NewFCM()
	defer google.Close()
	creds, err := sandbox.WriteCredentials(t.TempDir(), nil, google)
	if err != nil {
		t.Fatal(err)
	}
	endpoint, token, err := fcm.Config{ServiceAccountFile: creds.ServiceAccountFile}.URLs()
	if err != nil || endpoint != fcm.DefaultEndpoint || token != google.TokenURL() {
		t.Errorf("URLs() = %q, %q, %v; want %q, %q", endpoint, token, err, fcm.DefaultEndpoint, google.TokenURL())
	}
	if _, _, err := (fcm.Config{ServiceAccountFile: "/nonexistent.json"}).URLs(); err == nil ||
		!strings.HasPrefix(err.Error(), "fcm.service_account_file: ") {
		t.Errorf("URLs() of a missing file: %v", err)
	}
}

// TestFetchToken fetches a token through the egress path, and says why
// when the token endpoint refuses the service account or the egress
// refuses the host.
func TestFetchToken(t *testing.T) {
	google := sandbox.NewFCM()
	defer google.Close()
	dir := t.TempDir()
	creds, err := sandbox.WriteCredentials(dir, nil, google)
	if err != nil {
		t.Fatal(err)
	}
	// A second service account, for the same token endpoint, whose key
	// the look-alike does not trust.
	other, err := sandbox.WriteCredentials(t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(other.ServiceAccountFile)
	var sa map[string]string
	json.Unmarshal(raw, &sa)
	sa["token_uri"] = google.TokenURL()
	raw, _ = json.Marshal(sa)
	os.WriteFile(other.ServiceAccountFile, raw, 0o600)

	for _, tt := range []struct {
		name    string
		file    string
		allowed []string
		want    string // "" for success
		is      error
	}{
		{"accepted", creds.ServiceAccountFile, []string{"127.0.0.1"}, "", nil},
		{"key not trusted", other.ServiceAccountFile, []string{"127.0.0.1"}, "refused the service account: invalid_grant", nil},
		{"host not allowed", creds.ServiceAccountFile, []string{"fcm.googleapis.com"}, "egress to 127.0.0.1 refused", egress.ErrHostNotAllowed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			eg, err := egress.New(egress.Config{CAFile: creds.CAFile, AllowedHosts: tt.allowed}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			before := google.TokenFetches()
			err = fcm.FetchToken(context.Background(), fcm.Config{ServiceAccountFile: tt.file}, eg)
			switch {
			case tt.want == "" && (err != nil || google.TokenFetches() != before+1):
				t.Errorf("FetchToken = %v, %d token(s) issued", err, google.TokenFetches()-before)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("FetchToken = %v, want %q", err, tt.want)
			case tt.is != nil && !errors.Is(err, tt.is):
				t.Errorf("FetchToken = %v, want errors.Is %v", err, tt.is)
			}
			if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("the error shows the key: %v", err)
			}
		})
	}
}
