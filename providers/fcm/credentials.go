package fcm

import "github.com/pushrelay/pushrelay/providers/appconfig"

// serviceAccount is what the provider needs of a service account's JSON
// key; appconfig reads and checks it, as relay's check does.
type serviceAccount = appconfig.ServiceAccount

// loadServiceAccount reads and checks the service account JSON key at path.
// Errors start with "fcm.service_account_file: " and never quote the key.
func loadServiceAccount(path string) (*serviceAccount, error) {
	return appconfig.LoadServiceAccount(path)
}
