package relay

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
// AndroidApiKey, proxy credentials) is written into the output. Errors
// name the JSON key at fault.
func Migrate(oldJSON []byte, lookupEnv func(string) (string, bool)) (yamlOut []byte, mapped []string, err error) {
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	var old oldConfig
	if err := decodeOld(oldJSON, "", &old); err != nil {
		return nil, nil, err
	}
	unknown, err := unknownKeys(oldJSON, "", oldConfig{})
	if err != nil {
		return nil, nil, err
	}
	m := &migration{}
	w := &m.out

	// Apps first: they decide whether there is anything to serve.
	var apps bytes.Buffer
	n, err := m.apps(&apps, old, &unknown)
	if err != nil {
		return nil, nil, err
	}
	if n == 0 {
		return nil, nil, errors.New("ApplePushSettings, AndroidPushSettings: no entry can be served (see the comments of pushrelay migrate), so there is nothing to relay")
	}

	w.comment(0, "pushrelay configuration converted from a mattermost-push-proxy config.json by `pushrelay migrate`.")
	w.comment(0, "Read every comment, then validate it: pushrelay check --config pushrelay.yaml")
	if len(unknown) > 0 {
		w.comment(0, "Keys of the old file that pushrelay does not know, not carried over: "+strings.Join(unknown, ", "))
	}
	w.line("")

	listen := old.ListenAddress
	if listen == "" {
		listen = ":8066"
	}
	if err := checkAddr(listen); err != nil {
		return nil, nil, fmt.Errorf("ListenAddress: %v", err)
	}
	w.kv(0, "listen", yamlString(listen), "ListenAddress")
	m.note("ListenAddress -> listen")
	w.line("")

	m.limits(old)
	m.metrics(old)

	w.comment(0, "The old proxy sent on whatever the Mattermost server sent. With id_only (recommended) only ids leave: "+
		"the app fetches the content from your Mattermost server over its own connection. Choose full to keep "+
		"the old behaviour, or generic / generic_no_channel in between.")
	w.line("policy:")
	w.kv(1, "mode", "id_only", "")
	w.line("")

	w.line("apps:")
	w.out.Write(apps.Bytes())
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
	return w.out.Bytes(), m.notes, nil
}

// migration collects the YAML and the notes of one conversion.
type migration struct {
	out      yamlWriter
	notes    []string
	appNotes []string // what became of each app entry, listed after the top-level keys
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
// unknown collects the unknown keys of the entries.
func (m *migration) apps(buf *bytes.Buffer, old oldConfig, unknown *[]string) (int, error) {
	w := &yamlWriter{}
	// Written also on error: the caller drops it then.
	defer func() { buf.Write(w.out.Bytes()) }()
	seen := map[string]string{} // platform -> JSON key that configured it
	claim := func(key, typ string) error {
		if typ == "" {
			return fmt.Errorf("%s.Type: required (the Mattermost platform name, e.g. apple_rn)", key)
		}
		if prev, dup := seen[typ]; dup {
			return fmt.Errorf("%s.Type: %q is already configured by %s", key, typ, prev)
		}
		seen[typ] = key
		return nil
	}
	n := 0
	for i, raw := range old.ApplePushSettings {
		key := fmt.Sprintf("ApplePushSettings[%d]", i)
		var a oldApple
		if err := decodeOld(raw, key, &a); err != nil {
			return 0, err
		}
		u, err := unknownKeys(raw, key, oldApple{})
		if err != nil {
			return 0, err
		}
		*unknown = append(*unknown, u...)
		a.Type = strings.TrimSpace(a.Type)
		if err := claim(key, a.Type); err != nil {
			return 0, err
		}
		token := a.AppleAuthKeyFile != "" && a.AppleAuthKeyID != "" && a.AppleTeamID != ""
		if !token && a.ApplePushCertPrivate == "" {
			w.comment(1, key+" ("+a.Type+") is not carried over: it has neither a complete token key (AppleAuthKeyFile, "+
				"AppleAuthKeyID, AppleTeamID) nor a certificate (ApplePushCertPrivate), so the old proxy could not send either.")
			m.appNote(key + " -> skipped: no usable credentials")
			continue
		}
		if strings.TrimSpace(a.ApplePushTopic) == "" {
			return 0, fmt.Errorf("%s.ApplePushTopic: required (the app's bundle id, e.g. com.mattermost.rn)", key)
		}
		w.comment(1, key)
		w.line("  - platform: " + yamlString(a.Type))
		w.line("    apns:")
		w.kv(3, "topic", yamlString(a.ApplePushTopic), "ApplePushTopic")
		if token {
			w.kv(3, "auth_key_file", yamlString(a.AppleAuthKeyFile), "AppleAuthKeyFile")
			w.kv(3, "key_id", yamlString(a.AppleAuthKeyID), "AppleAuthKeyID")
			w.kv(3, "team_id", yamlString(a.AppleTeamID), "AppleTeamID")
			if a.ApplePushCertPrivate != "" {
				w.comment(3, "ApplePushCertPrivate is not used: with a complete token key the old proxy used token auth, as here.")
			}
			m.appNote(fmt.Sprintf("%s -> apps[%d] (%s, apns token auth)", key, n, a.Type))
		} else {
			if a.AppleAuthKeyFile != "" || a.AppleAuthKeyID != "" || a.AppleTeamID != "" {
				w.comment(3, "AppleAuthKeyFile, AppleAuthKeyID and AppleTeamID are incomplete: certificate auth, as the old proxy did.")
			}
			w.kv(3, "cert_file", yamlString(a.ApplePushCertPrivate), "ApplePushCertPrivate")
			m.appNote(fmt.Sprintf("%s -> apps[%d] (%s, apns certificate auth)", key, n, a.Type))
			if a.ApplePushCertPassword != "" {
				pwFile := filepath.Join(filepath.Dir(a.ApplePushCertPrivate), a.Type+".cert-password")
				w.comment(3, "ApplePushCertPassword is not copied here: write it into this file (one line, mode 0600).")
				w.kv(3, "cert_password_file", yamlString(pwFile), "")
				m.appNote(fmt.Sprintf("%s.ApplePushCertPassword -> write it into apps[%d].apns.cert_password_file %s", key, n, pwFile))
			}
		}
		w.kv(3, "development", strconv.FormatBool(a.ApplePushUseDevelopment), "ApplePushUseDevelopment")
		n++
	}
	for i, raw := range old.AndroidPushSettings {
		key := fmt.Sprintf("AndroidPushSettings[%d]", i)
		var a oldAndroid
		if err := decodeOld(raw, key, &a); err != nil {
			return 0, err
		}
		u, err := unknownKeys(raw, key, oldAndroid{})
		if err != nil {
			return 0, err
		}
		*unknown = append(*unknown, u...)
		a.Type = strings.TrimSpace(a.Type)
		if err := claim(key, a.Type); err != nil {
			return 0, err
		}
		sa, saKey := a.ServiceFileLocation, "ServiceFileLocation"
		if sa == "" {
			sa, saKey = a.ServiceAccountFile, "ServiceAccountFile"
		}
		if sa == "" {
			w.comment(1, key+" ("+a.Type+") is not carried over: it has no ServiceFileLocation, only AndroidApiKey for "+
				"Google's legacy FCM API, which Google has shut down. Create a service account key (Firebase console > "+
				"Project settings > Service accounts > Generate new private key) and add:")
			w.line("  #   - platform: " + yamlString(a.Type))
			w.line("  #     fcm:")
			w.line("  #       service_account_file: /path/to/firebase-service-account.json")
			m.appNote(key + " -> skipped: no service account (AndroidApiKey is for Google's retired legacy API)")
			continue
		}
		w.comment(1, key)
		w.line("  - platform: " + yamlString(a.Type))
		w.line("    fcm:")
		w.kv(3, "service_account_file", yamlString(sa), saKey)
		if a.AndroidAPIKey != "" {
			w.comment(3, "AndroidApiKey is not needed (and not copied): Google's legacy API is gone; the service account is used.")
		}
		m.appNote(fmt.Sprintf("%s -> apps[%d] (%s, fcm)", key, n, a.Type))
		n++
	}
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
