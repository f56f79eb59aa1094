package migrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// The old proxy's config.json, as mattermost-push-proxy's server package
// decodes it (encoding/json: key names match case-insensitively).
type oldConfig struct {
	ListenAddress           string
	ThrottlePerSec          int
	ThrottleMemoryStoreSize int
	ThrottleVaryByHeader    string
	EnableMetrics           bool
	SendTimeoutSec          int
	RetryTimeoutSec         int
	EnableConsoleLog        bool
	EnableFileLog           bool
	LogFileLocation         string
	LogFormat               string
	ApplePushSettings       []json.RawMessage
	AndroidPushSettings     []json.RawMessage
}

type oldApple struct {
	Type                    string
	ApplePushUseDevelopment bool
	ApplePushCertPrivate    string
	ApplePushCertPassword   string
	ApplePushTopic          string
	AppleAuthKeyFile        string
	AppleAuthKeyID          string
	AppleTeamID             string
}

type oldAndroid struct {
	Type                string
	AndroidAPIKey       string `json:"AndroidApiKey"`
	ServiceFileLocation string
	ServiceAccountFile  string // not the old proxy's name, but an easy mistake: accepted too
}

// oldProxyKeys are the keys that mark a JSON file as the old proxy's config.
var oldProxyKeys = []string{"ApplePushSettings", "AndroidPushSettings", "ListenAddress"}

// maxMigratedTimeout caps delivery.timeout when converting SendTimeoutSec.
const maxMigratedTimeout = 10 * time.Second

// IsOldProxyConfig reports whether data looks like mattermost-push-proxy's
// config.json: a JSON object with one of its top-level keys
// (ApplePushSettings, AndroidPushSettings, ListenAddress). A broken JSON
// file that names one of them counts too, so that Migrate can say where it
// is broken.
func IsOldProxyConfig(data []byte) bool {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return false
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return slices.ContainsFunc(oldProxyKeys, func(k string) bool { return bytes.Contains(data, []byte(`"`+k+`"`)) })
	}
	for k := range top {
		if slices.ContainsFunc(oldProxyKeys, func(known string) bool { return strings.EqualFold(k, known) }) {
			return true
		}
	}
	return false
}

// Migrate converts mattermost-push-proxy's config.json into the equivalent
// pushrelay YAML, with comments where the two differ, and lists what each
// old key became (for a log line). lookupEnv (nil for none) reads
// HTTPS_PROXY and HTTP_PROXY, through which the old proxy sent; only their
// host is mentioned. No secret of the old file (ApplePushCertPassword,
// AndroidApiKey, proxy credentials) is written into the output.
//
// It always returns the YAML it can make: an entry that still lacks a
// credential is written with that key empty and a comment naming the key to
// fill (and the notes say so too), so that pushrelay check lists what is
// left to do. It fails only when the input cannot be read: not JSON, or a
// value of the wrong type; the error names the JSON key at fault. Relative
// paths are kept as they are; MigrateFile makes them absolute.
func Migrate(oldJSON []byte, lookupEnv func(string) (string, bool)) (yamlOut []byte, mapped []string, err error) {
	r, err := migrateConfig(oldJSON, "", lookupEnv)
	if err != nil {
		return nil, nil, err
	}
	return r.yaml, r.notes, nil
}

// MigrateFile is Migrate for the old proxy's config file at path: relative
// paths in it (AppleAuthKeyFile, ApplePushCertPrivate, ServiceFileLocation)
// are made absolute against the directory the old proxy ran in (its install
// directory, the parent of the file's config/ directory, or else the file's
// own directory), with a comment saying so, so that the YAML works wherever
// it is saved.
func MigrateFile(path string, oldJSON []byte, lookupEnv func(string) (string, bool)) (yamlOut []byte, mapped []string, err error) {
	r, err := migrateConfig(oldJSON, oldProxyDir(path), lookupEnv)
	if err != nil {
		return nil, nil, err
	}
	return r.yaml, r.notes, nil
}

// Legacy is the relay.Legacy of mattermost-push-proxy's config.json: it
// converts data as MigrateFile does when IsOldProxyConfig says it is that
// file, and returns nil otherwise. Errors name the JSON key at fault.
func Legacy(data []byte, path string, lookupEnv func(string) (string, bool)) (*relay.Converted, error) {
	if !IsOldProxyConfig(data) {
		return nil, nil
	}
	m, err := migrateConfig(data, oldProxyDir(path), lookupEnv)
	if err != nil {
		return nil, err
	}
	return &relay.Converted{YAML: m.yaml, Notes: m.notes, Sources: m.sources}, nil
}

// oldProxyDir guesses the working directory of the old proxy whose config
// file is at path: mattermost-push-proxy runs from its install directory
// with its config in config/ below it.
func oldProxyDir(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	dir := filepath.Dir(abs)
	if filepath.Base(dir) == "config" {
		return filepath.Dir(dir)
	}
	return dir
}

// migrated is one conversion's result: the YAML, the notes, and for each
// YAML key of an app the JSON key it came from (to name it in errors).
type migrated struct {
	yaml    []byte
	notes   []string
	sources map[string]string
}

func migrateConfig(oldJSON []byte, dir string, lookupEnv func(string) (string, bool)) (*migrated, error) {
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	old, unknown, err := decodeObject[oldConfig](oldJSON, "")
	if err != nil {
		return nil, err
	}
	m := &migration{dir: dir, sources: map[string]string{}}
	w := &m.out

	// Apps first: their unknown keys belong in the header.
	var apps bytes.Buffer
	n, err := m.apps(&apps, old, &unknown)
	if err != nil {
		return nil, err
	}

	w.comment(0, "pushrelay configuration converted from a mattermost-push-proxy config.json by `pushrelay migrate`.")
	w.comment(0, "Read every comment, then validate it: pushrelay check --config pushrelay.yaml")
	if len(m.fill) > 0 {
		w.comment(0, "Still to fill in (each marked FILL below): "+strings.Join(m.fill, ", "))
	}
	if len(unknown) > 0 {
		w.comment(0, "Keys of the old file that pushrelay does not know, not carried over: "+strings.Join(unknown, ", "))
	}
	w.line("")

	listen := old.ListenAddress
	if listen == "" {
		listen = ":8066"
	}
	if err := relay.CheckAddr(listen); err != nil {
		w.kv(0, "listen", yamlString(":8066"), fmt.Sprintf("ListenAddress %q is not host:port (%v): the old proxy's default is used", commentSafe(listen), err))
		m.note(`ListenAddress -> listen ":8066" (the old value is not host:port)`)
	} else {
		w.kv(0, "listen", yamlString(listen), "ListenAddress")
		m.note("ListenAddress -> listen")
	}
	w.line("")

	m.limits(old)
	m.metrics(old)

	w.comment(0, "The old proxy sent on whatever the Mattermost server sent. With id_only (recommended) only ids leave: "+
		"the app fetches the content from your Mattermost server over its own connection, and shows it only when that "+
		"server is licensed (Professional or Enterprise) and reachable from the phone (VPN); otherwise the phone shows "+
		"\"You've received a new message.\" (see \"What the phone shows\" in the README). Choose full to keep the old "+
		"behaviour, or generic / generic_no_channel in between.")
	w.line("policy:")
	w.kv(1, "mode", "id_only", "")
	w.line("")

	if n == 0 {
		w.comment(0, "FILL apps: the old file has no ApplePushSettings or AndroidPushSettings entry; add one per Mattermost platform.")
		w.line("apps: []")
		m.fill = append(m.fill, "apps")
		m.note("ApplePushSettings, AndroidPushSettings -> none: FILL apps")
	} else {
		w.line("apps:")
		w.out.Write(apps.Bytes())
	}
	w.line("")
	m.notes = append(m.notes, m.appNotes...)

	m.delivery(old)
	m.egress(lookupEnv)

	w.line("spool:")
	w.kv(1, "dir", "/var/lib/pushrelay", "new: notifications waiting for redelivery; must be writable by pushrelay")
	w.kv(1, "max_age", "1h", "older ones are dropped, never delivered late")
	w.line("")

	m.log(old)
	if len(unknown) > 0 {
		m.note("not carried over (unknown keys): " + strings.Join(unknown, ", "))
	}
	if len(m.fill) > 0 {
		m.note("FILL before use (pushrelay check lists them): " + strings.Join(m.fill, ", "))
	}
	return &migrated{yaml: w.out.Bytes(), notes: m.notes, sources: m.sources}, nil
}

// migration collects the YAML and the notes of one conversion.
type migration struct {
	out      yamlWriter
	notes    []string
	appNotes []string          // what became of each app entry, listed after the top-level keys
	fill     []string          // the YAML keys left empty that need a value
	dir      string            // the old proxy's working directory, for relative paths; "" keeps them
	sources  map[string]string // YAML key of an app -> the JSON key it came from
}

// path writes a file path of the old file, made absolute against m.dir
// when it is relative, with a note saying so.
func (m *migration) path(p, oldKey string) (value, note string) {
	if p == "" || m.dir == "" || filepath.IsAbs(p) {
		return p, oldKey
	}
	abs := filepath.Join(m.dir, p)
	return abs, fmt.Sprintf("%s %s was relative to the old proxy's working directory, taken as %s: check it", oldKey, p, m.dir)
}

func (m *migration) note(s string) { m.notes = append(m.notes, s) }

func (m *migration) appNote(s string) { m.appNotes = append(m.appNotes, s) }

func (m *migration) limits(old oldConfig) {
	w := &m.out
	vary := strings.TrimSpace(old.ThrottleVaryByHeader)
	if vary != "" {
		w.line("auth:")
		if strings.EqualFold(vary, "X-Forwarded-For") {
			w.comment(1, "ThrottleVaryByHeader X-Forwarded-For: the old proxy sat behind a proxy or load balancer that sets it. "+
				"List that proxy's addresses here (e.g. [10.0.0.5/32]) so that pushrelay believes its X-Forwarded-For "+
				"and limits each Mattermost server rather than all of them at once as the proxy's address.")
		} else {
			w.comment(1, "ThrottleVaryByHeader "+vary+": pushrelay limits by client address only, taken from X-Forwarded-For "+
				"when the request comes through one of these proxies (e.g. [10.0.0.5/32]).")
		}
		w.kv(1, "trusted_proxies", "[]", "")
		w.line("")
		m.note("ThrottleVaryByHeader -> set auth.trusted_proxies to the proxy in front")
	}
	w.line("limits:")
	if old.ThrottlePerSec > 0 {
		w.kv(1, "rate_per_client", strconv.Itoa(old.ThrottlePerSec), "ThrottlePerSec: requests per second per client address")
		w.kv(1, "burst", strconv.Itoa(old.ThrottlePerSec), "one second's worth")
		m.note("ThrottlePerSec -> limits.rate_per_client, limits.burst")
	} else {
		w.kv(1, "rate_per_client", "0", "ThrottlePerSec was not set: no per-client limit")
	}
	if old.ThrottleMemoryStoreSize != 0 {
		w.comment(1, "ThrottleMemoryStoreSize is not needed: pushrelay bounds the limiter's memory itself.")
		m.note("ThrottleMemoryStoreSize -> not needed")
	}
	w.line("")
}

func (m *migration) metrics(old oldConfig) {
	w := &m.out
	w.line("metrics:")
	if old.EnableMetrics {
		w.comment(1, "EnableMetrics: the old proxy served /metrics on ListenAddress; pushrelay serves it on its own "+
			"listener: point Prometheus at this port.")
		w.kv(1, "listen", yamlString(":9066"), "")
		m.note("EnableMetrics -> metrics.listen")
	} else {
		w.kv(1, "listen", `""`, "EnableMetrics false: no /metrics (\":9066\" turns it on)")
		m.note("EnableMetrics false -> metrics.listen \"\"")
	}
	w.kv(1, "legacy_names", "true", "also export the old proxy's service_* metrics, for existing dashboards")
	w.line("")
}

// apps writes the apps list into buf and returns how many apps it holds.
// unknown collects the unknown keys of the entries. Only an entry that
// cannot be decoded is an error; one that lacks a value is written with a
// FILL comment naming the key.
func (m *migration) apps(buf *bytes.Buffer, old oldConfig, unknown *[]string) (int, error) {
	w := &yamlWriter{}
	seen := map[string]string{} // platform -> JSON key that configured it
	n := 0
	// entry starts app n, from the JSON entry key: its platform line, or
	// false when the entry is left out (a platform configured twice).
	entry := func(key, typ string) bool {
		app := fmt.Sprintf("apps[%d]", n)
		if typ != "" {
			if prev, dup := seen[typ]; dup {
				w.comment(1, fmt.Sprintf("%s is not carried over: its Type %q is already configured by %s, and one platform "+
					"goes to one app.", key, commentSafe(typ), prev))
				m.appNote(key + " -> skipped: its Type is configured twice")
				return false
			}
			seen[typ] = key
		}
		w.comment(1, key)
		m.sources[app] = key
		m.sources[app+".platform"] = key + ".Type"
		if typ == "" {
			m.fill = append(m.fill, app+".platform")
			w.kv(1, "- platform", `""`, "FILL: "+key+".Type is empty: the Mattermost platform name the app registers with (e.g. apple_rn)")
		} else {
			w.line("  - platform: " + yamlString(typ))
		}
		return true
	}
	// value writes key: v, or an empty value with a FILL comment.
	value := func(app, yamlKey, v, note, fillNote string) {
		full := app + "." + yamlKey
		if v == "" {
			m.fill = append(m.fill, full)
			w.kv(3, yamlKey[strings.LastIndexByte(yamlKey, '.')+1:], `""`, "FILL: "+fillNote)
			return
		}
		w.kv(3, yamlKey[strings.LastIndexByte(yamlKey, '.')+1:], yamlString(v), note)
	}
	for i, raw := range old.ApplePushSettings {
		key := fmt.Sprintf("ApplePushSettings[%d]", i)
		a, u, err := decodeObject[oldApple](raw, key)
		if err != nil {
			return 0, err
		}
		*unknown = append(*unknown, u...)
		a.Type = strings.TrimSpace(a.Type)
		if !entry(key, a.Type) {
			continue
		}
		app := fmt.Sprintf("apps[%d]", n)
		src := func(yamlKey, jsonKey string) { m.sources[app+"."+yamlKey] = key + "." + jsonKey }
		src("apns.topic", "ApplePushTopic")
		src("apns.auth_key_file", "AppleAuthKeyFile")
		src("apns.key_id", "AppleAuthKeyID")
		src("apns.team_id", "AppleTeamID")
		src("apns.cert_file", "ApplePushCertPrivate")
		w.line("    apns:")
		value(app, "apns.topic", strings.TrimSpace(a.ApplePushTopic), "ApplePushTopic",
			key+".ApplePushTopic is empty: the app's bundle id (e.g. com.mattermost.rn)")
		token := a.AppleAuthKeyFile != "" && a.AppleAuthKeyID != "" && a.AppleTeamID != ""
		if token || a.ApplePushCertPrivate == "" {
			if !token {
				w.comment(3, "The old file has no complete token key (AppleAuthKeyFile, AppleAuthKeyID, AppleTeamID) and no "+
					"certificate (ApplePushCertPrivate). Fill in the token key from your Apple developer account (Keys), or "+
					"replace these three lines with cert_file: (and cert_password_file:) for certificate auth.")
			}
			file, note := m.path(a.AppleAuthKeyFile, "AppleAuthKeyFile")
			value(app, "apns.auth_key_file", file, note, "the .p8 key file (AuthKey_XXXXXXXXXX.p8), readable by pushrelay")
			value(app, "apns.key_id", a.AppleAuthKeyID, "AppleAuthKeyID", "the key's 10-character id")
			value(app, "apns.team_id", a.AppleTeamID, "AppleTeamID", "your Apple team id (10 characters)")
			if token && a.ApplePushCertPrivate != "" {
				w.comment(3, "ApplePushCertPrivate is not used: with a complete token key the old proxy used token auth, as here.")
			}
			if token {
				m.appNote(fmt.Sprintf("%s -> %s (%s, apns token auth)", key, app, a.Type))
			} else {
				m.appNote(fmt.Sprintf("%s -> %s (%s, apns): FILL its credentials", key, app, a.Type))
			}
		} else {
			if a.AppleAuthKeyFile != "" || a.AppleAuthKeyID != "" || a.AppleTeamID != "" {
				w.comment(3, "AppleAuthKeyFile, AppleAuthKeyID and AppleTeamID are incomplete: certificate auth, as the old proxy did.")
			}
			file, note := m.path(a.ApplePushCertPrivate, "ApplePushCertPrivate")
			w.kv(3, "cert_file", yamlString(file), note)
			m.appNote(fmt.Sprintf("%s -> %s (%s, apns certificate auth)", key, app, a.Type))
			if a.ApplePushCertPassword != "" {
				pwFile := filepath.Join(filepath.Dir(file), cmpOr(a.Type, "apple")+".cert-password")
				w.comment(3, "ApplePushCertPassword is not copied here: write it into this file (one line, mode 0600).")
				w.kv(3, "cert_password_file", yamlString(pwFile), "")
				m.appNote(fmt.Sprintf("%s.ApplePushCertPassword -> write it into %s.apns.cert_password_file %s", key, app, pwFile))
			}
		}
		w.kv(3, "development", strconv.FormatBool(a.ApplePushUseDevelopment), "ApplePushUseDevelopment")
		n++
	}
	for i, raw := range old.AndroidPushSettings {
		key := fmt.Sprintf("AndroidPushSettings[%d]", i)
		a, u, err := decodeObject[oldAndroid](raw, key)
		if err != nil {
			return 0, err
		}
		*unknown = append(*unknown, u...)
		a.Type = strings.TrimSpace(a.Type)
		if !entry(key, a.Type) {
			continue
		}
		app := fmt.Sprintf("apps[%d]", n)
		sa, saKey := a.ServiceFileLocation, "ServiceFileLocation"
		if sa == "" && a.ServiceAccountFile != "" {
			sa, saKey = a.ServiceAccountFile, "ServiceAccountFile"
		}
		m.sources[app+".fcm.service_account_file"] = key + "." + saKey
		w.line("    fcm:")
		if sa == "" {
			text := "The old file has no ServiceFileLocation"
			if a.AndroidAPIKey != "" {
				text += ", only AndroidApiKey for Google's legacy FCM API, which Google has shut down (the key is not copied)"
			}
			w.comment(3, text+". Create a service account key (Firebase console > Project settings > Service accounts > "+
				"Generate new private key) and name its file here.")
			m.appNote(fmt.Sprintf("%s -> %s (%s, fcm): FILL its service account", key, app, a.Type))
		} else {
			m.appNote(fmt.Sprintf("%s -> %s (%s, fcm)", key, app, a.Type))
		}
		file, note := m.path(sa, saKey)
		value(app, "fcm.service_account_file", file, note, "the Firebase service account key (JSON), readable by pushrelay")
		if sa != "" && a.AndroidAPIKey != "" {
			w.comment(3, "AndroidApiKey is not needed (and not copied): Google's legacy API is gone; the service account is used.")
		}
		n++
	}
	buf.Write(w.out.Bytes())
	return n, nil
}

func (m *migration) delivery(old oldConfig) {
	w := &m.out
	send := old.SendTimeoutSec
	if send <= 0 {
		send = 30 // the old proxy's default
	}
	timeout := time.Duration(send) * time.Second
	w.line("delivery:")
	if timeout > maxMigratedTimeout {
		w.comment(1, fmt.Sprintf("SendTimeoutSec %d was the old proxy's budget for all its attempts at one push. "+
			"pushrelay makes one attempt, capped at %s (it must stay well below Mattermost's 30s), and keeps a failure "+
			"worth retrying in the spool, answering OK at once.", send, maxMigratedTimeout))
		timeout = maxMigratedTimeout
		m.note(fmt.Sprintf("SendTimeoutSec -> delivery.timeout (capped at %s)", maxMigratedTimeout))
	} else {
		m.note("SendTimeoutSec -> delivery.timeout")
	}
	w.kv(1, "timeout", timeout.String(), "")
	if old.RetryTimeoutSec != 0 {
		w.comment(1, fmt.Sprintf("RetryTimeoutSec %d: the old proxy retried within the request; pushrelay's spool "+
			"redelivers instead, with this backoff, until spool.max_age.", old.RetryTimeoutSec))
		m.note("RetryTimeoutSec -> not needed: the spool redelivers")
	}
	w.kv(1, "backoff", "{initial: 1s, max: 5m}", "")
	w.line("")
}

func (m *migration) egress(lookupEnv func(string) (string, bool)) {
	w := &m.out
	get := func(names ...string) (string, string) {
		for _, n := range names {
			if v, ok := lookupEnv(n); ok && strings.TrimSpace(v) != "" {
				return n, strings.TrimSpace(v)
			}
		}
		return "", ""
	}
	httpsName, httpsProxy := get("HTTPS_PROXY", "https_proxy")
	httpName, httpProxy := get("HTTP_PROXY", "http_proxy")
	if httpsProxy == "" && httpProxy == "" {
		return
	}
	w.line("egress:")
	switch {
	case httpsProxy != "":
		w.comment(1, httpsName+" was "+proxyHost(httpsProxy)+" where migrate ran: the old proxy sent through it. "+
			"With egress.proxy empty, pushrelay uses HTTPS_PROXY from its own environment too; or set it here "+
			"(http://user:password@host:port).")
		m.note(httpsName + " -> egress.proxy empty: pushrelay uses HTTPS_PROXY from its environment")
	default:
		w.comment(1, httpName+" was "+proxyHost(httpProxy)+" where migrate ran: the old proxy sent through it. "+
			"pushrelay tunnels every connection and does not read HTTP_PROXY: set egress.proxy to it "+
			"(http://user:password@host:port if it needs a login), or HTTPS_PROXY in pushrelay's environment.")
		m.note(httpName + " -> set egress.proxy (pushrelay does not read HTTP_PROXY)")
	}
	w.kv(1, "proxy", `""`, "")
	w.line("")
}

// proxyHost names a proxy URL by scheme and host only: never its credentials.
func proxyHost(raw string) string {
	s := raw
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "set (not a URL pushrelay can read)"
	}
	out := u.Scheme + "://" + u.Host
	if u.User != nil {
		out += " (its credentials not shown)"
	}
	return out
}

func (m *migration) log(old oldConfig) {
	w := &m.out
	w.line("log:")
	switch strings.ToLower(strings.TrimSpace(old.LogFormat)) {
	case "plain", "text":
		w.kv(1, "format", "text", "LogFormat "+old.LogFormat)
		m.note("LogFormat -> log.format")
	case "json":
		w.kv(1, "format", "json", "LogFormat json")
		m.note("LogFormat -> log.format")
	case "":
		w.kv(1, "format", "json", "")
	default:
		w.kv(1, "format", "json", "LogFormat "+old.LogFormat+" is not json or plain")
		m.note("LogFormat -> log.format json (unknown value)")
	}
	w.kv(1, "level", "info", "")
	if old.EnableFileLog || old.LogFileLocation != "" {
		text := "EnableFileLog: pushrelay logs to stderr only: under systemd it goes to the journal " +
			"(journalctl -u pushrelay), in a container to stdout."
		if old.LogFileLocation != "" {
			text += " " + old.LogFileLocation + " is no longer written."
		}
		w.comment(1, text)
		m.note("EnableFileLog, LogFileLocation -> stderr (journald or the container's stdout)")
	}
	if !old.EnableConsoleLog && !old.EnableFileLog {
		w.comment(1, "EnableConsoleLog false: pushrelay always logs to stderr; log.level warn keeps it quiet.")
	}
}

// decodeObject decodes the old config's JSON object data (at key prefix,
// "" for the whole file) into a T, and lists the keys T has no field for.
func decodeObject[T any](data []byte, prefix string) (v T, unknown []string, err error) {
	if err = decodeOld(data, prefix, &v); err != nil {
		return v, nil, err
	}
	unknown, err = unknownKeys(data, prefix, v)
	return v, unknown, err
}

// decodeOld decodes one JSON object of the old config; errors name the key.
func decodeOld(data []byte, prefix string, v any) error {
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		key := te.Field
		if key == "" {
			key = prefix
		} else if prefix != "" {
			key = prefix + "." + key
		}
		if key == "" {
			return fmt.Errorf("not a mattermost-push-proxy config: expected a JSON object, got JSON %s", te.Value)
		}
		return fmt.Errorf("%s: expected %s, got JSON %s", key, jsonKind(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("not valid JSON at byte %d: %v", se.Offset, err)
	}
	return fmt.Errorf("not valid JSON: %v", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64":
		return "a whole number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "slice":
		return "a list"
	case "struct":
		return "an object"
	}
	return goKind
}

// unknownKeys lists the keys of the JSON object data that the struct type of
// known does not have (matching case-insensitively, as the old proxy did),
// prefixed with prefix.
func unknownKeys(data []byte, prefix string, known any) ([]string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("%s: expected an object", cmpOr(prefix, "the config"))
	}
	var fields []string
	t := reflect.TypeOf(known)
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Name
		if tag := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]; tag != "" {
			name = tag
		}
		fields = append(fields, name)
	}
	var out []string
	for k := range obj {
		if !slices.ContainsFunc(fields, func(f string) bool { return strings.EqualFold(f, k) }) {
			name := commentSafe(k)
			if prefix != "" {
				name = prefix + "." + name
			}
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// yamlWriter builds the YAML text line by line.
type yamlWriter struct {
	out bytes.Buffer
}

func (w *yamlWriter) line(s string) {
	w.out.WriteString(s)
	w.out.WriteByte('\n')
}

// kv writes "key: value" at the indent level (two spaces each), with an
// end-of-line comment when note is not empty.
func (w *yamlWriter) kv(level int, key, value, note string) {
	s := strings.Repeat("  ", level) + key + ": " + value
	if note != "" {
		s += "  # " + commentSafe(note)
	}
	w.line(s)
}

// comment writes text as comment lines at the indent level, wrapped at
// commentWidth columns.
func (w *yamlWriter) comment(level int, text string) {
	prefix := strings.Repeat("  ", level) + "# "
	line := prefix
	for _, word := range strings.Fields(commentSafe(text)) {
		if len(line) > len(prefix) && len(line)+1+len(word) > commentWidth {
			w.line(line)
			line = prefix
		}
		if len(line) > len(prefix) {
			line += " "
		}
		line += word
	}
	w.line(line)
}

// commentWidth is where comments wrap.
const commentWidth = 116

// commentSafe keeps text from the old file on one comment line.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || r == '\ufeff' {
			return ' '
		}
		return r
	}, s)
}

var plainYAML = regexp.MustCompile(`^[A-Za-z_/][A-Za-z0-9_./-]*$`)

// yamlString writes s as a YAML scalar: plain when that cannot be misread,
// else double-quoted (Go's escapes are YAML's).
func yamlString(s string) string {
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "true", "false", "on", "off", "null":
		return strconv.Quote(s)
	}
	if plainYAML.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}
