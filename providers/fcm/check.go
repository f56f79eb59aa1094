package fcm

import (
	"context"
	"fmt"
	"net/http"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/pushrelay/pushrelay/providers/egress"
)

// FetchToken fetches one OAuth 2.0 access token for cfg's service account
// from its token_uri, through eg as Send does, and throws it away: it
// proves that the way to the token endpoint works and that Google accepts
// the service account (`pushrelay check --egress`). The error says whether
// the endpoint refused the service account or could not be reached, names
// the endpoint, and never holds the token or the key.
func FetchToken(ctx context.Context, cfg Config, eg *egress.Egress) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	sa, err := loadServiceAccount(cfg.ServiceAccountFile)
	if err != nil {
		return err
	}
	tokenCtx := context.WithValue(ctx, oauth2.HTTPClient,
		&http.Client{Transport: eg.Transport(), Timeout: tokenFetchTimeout})
	creds, err := google.CredentialsFromJSONWithType(tokenCtx, sa.Raw, google.ServiceAccount, scope)
	if err != nil {
		return fmt.Errorf("fcm.service_account_file: %w", err)
	}
	c := &tokenCache{src: creds.TokenSource, eg: eg, host: hostPort(sa.TokenEndpoint()), hostname: hostOf(sa.TokenEndpoint())}
	if _, err := creds.TokenSource.Token(); err != nil {
		return c.result(err).Err
	}
	return nil
}
