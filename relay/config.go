package relay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pushrelay/pushrelay/policy"
	"github.com/pushrelay/pushrelay/providers/appconfig"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/relay/spool"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// Config is the relay's whole configuration, as read from YAML. Every key
// can also be set from the environment as PUSHRELAY_<PATH>, e.g.
// PUSHRELAY_EGRESS_PROXY or PUSHRELAY_DELIVERY_TIMEOUT.
type Config struct {
	Listen   string         `yaml:"listen"`
	TLS      TLSConfig      `yaml:"tls"`
	Auth     AuthConfig     `yaml:"auth"`
	Limits   LimitsConfig   `yaml:"limits"`
	Metrics  MetricsConfig  `yaml:"metrics"`
	Policy   policy.Config  `yaml:"policy"`
	Apps     []AppConfig    `yaml:"apps"`
	Egress   egress.Config  `yaml:"egress"`
	Delivery DeliveryConfig `yaml:"delivery"`
	Spool    spool.Config   `yaml:"spool"`
	Log      LogConfig      `yaml:"log"`

	// lines holds the file line of each key, for ordering problems.
	lines map[string]int

	// Migrated is set when the file was a mattermost-push-proxy config.json
	// converted on the fly (see Migrate): what each of its keys became. The
	// relay logs it at startup.
	Migrated []string `yaml:"-"`
}

// TLSConfig turns on TLS for the ingress listener; ClientCAFile requires
// client certificates signed by those CAs (mutual TLS).
type TLSConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// AuthConfig says who may use the relay.
type AuthConfig struct {
	SecretsFile      string   `yaml:"secrets_file"`
	AllowedServerIDs []string `yaml:"allowed_server_ids"`
	AllowedNetworks  []string `yaml:"allowed_networks"`
	TrustedProxies   []string `yaml:"trusted_proxies"`
}

// LimitsConfig bounds what one client can cost the relay. A zero rate
// turns per-client rate limiting off.
type LimitsConfig struct {
	MaxBodyBytes      int64         `yaml:"max_body_bytes"`
	MaxInFlight       int           `yaml:"max_in_flight"`
	RatePerClient     float64       `yaml:"rate_per_client"`
	Burst             int           `yaml:"burst"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
}

// MetricsConfig places the Prometheus endpoint on its own listener.
// LegacyNames also exports the metric names of mattermost-push-proxy
// (service_*), so that dashboards built for it keep working.
type MetricsConfig struct {
	Listen      string `yaml:"listen"`
	LegacyNames bool   `yaml:"legacy_names"`
	// Pprof serves net/http/pprof under /debug/pprof/ on the metrics
	// listener, for profiling a running relay. Off by default.
	Pprof bool `yaml:"pprof"`
}

// AppConfig routes one Mattermost platform name ("*" for any other) to
// exactly one provider. The provider sections' types are
// providers/appconfig's (aliased as apns.Config, fcm.Config and
// upstream.Config), so that the pipeline names no concrete provider.
type AppConfig struct {
	Platform string              `yaml:"platform"`
	APNs     *appconfig.APNs     `yaml:"apns"`
	FCM      *appconfig.FCM      `yaml:"fcm"`
	Upstream *appconfig.Upstream `yaml:"upstream"`
}

// Kind names the app's provider: "apns", "fcm" or "upstream" (a metric
// label), or "" when none is configured.
func (a AppConfig) Kind() string {
	switch {
	case a.APNs != nil:
		return "apns"
	case a.FCM != nil:
		return "fcm"
	case a.Upstream != nil:
		return "upstream"
	}
	return ""
}

// DeliveryConfig bounds each upstream attempt and the spool's redelivery.
type DeliveryConfig struct {
	Timeout time.Duration `yaml:"timeout"`
	Backoff BackoffConfig `yaml:"backoff"`
}

// BackoffConfig is the spool's exponential redelivery backoff.
type BackoffConfig struct {
	Initial time.Duration `yaml:"initial"`
	Max     time.Duration `yaml:"max"`
}

// LogConfig chooses the log format (json or text) and level. Audit logs
// one line per push at info level: which policy rule matched, which fields
// it removed (never their values), and the outcome. Off (the default, as
// that line costs about as much CPU as the rest of the relay's own work),
// it is logged at debug level, and only failures and dead tokens reach
// info.
type LogConfig struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
	Audit  bool   `yaml:"audit"`
}

// Defaults returns the configuration used for every key a file leaves out.
func Defaults() Config {
	return Config{
		Listen: ":8066",
		Limits: LimitsConfig{MaxBodyBytes: 64 << 10, MaxInFlight: 4096, MaxHeaderBytes: 8 << 10,
			ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute},
		Metrics:  MetricsConfig{Listen: ":9066"},
		Policy:   policy.Config{Mode: policy.IDOnly},
		Delivery: DeliveryConfig{Timeout: 5 * time.Second, Backoff: BackoffConfig{Initial: time.Second, Max: 5 * time.Minute}},
		Spool:    spool.Config{Dir: "/var/lib/pushrelay", MaxAge: time.Hour, MaxMessages: 1_000_000, MaxBytes: 1 << 30},
		Log:      LogConfig{Format: "json", Level: "info"},
	}
}

// LoadConfig reads the YAML file at path over the defaults, applies
// PUSHRELAY_* environment overrides and validates the result. Relative file
// paths in the file (credentials, certificates, secrets, spool.dir) are
// taken relative to the file's directory, not the working directory. An
// environment variable PUSHRELAY_* that names no key is an error. The error
// is a Problems listing every problem found, in file order, each naming
// its key.
//
// The file may also be of the format legacy (nil for none) converts, as
// mattermost-push-proxy's config.json is by cmd/pushrelay's migrate (the
// proxy's HTTPS_PROXY read from the environment): Config.Migrated then says
// what each of its keys became, and errors name the old file's keys.
func LoadConfig(path string, legacy Legacy) (*Config, error) {
	cfg, probs, old := loadConfig(path, legacy, os.LookupEnv, os.Environ())
	if len(probs) > 0 {
		return nil, configError(path, old, cfg == nil, probs)
	}
	return cfg, nil
}

// configError names the file; for the old proxy's file, says so, and
// unless it could not be read, how to see the YAML it becomes.
func configError(path string, old, unread bool, probs Problems) error {
	if old && unread {
		return fmt.Errorf("config %s (a mattermost-push-proxy config.json): %w", path, probs)
	}
	if old {
		return fmt.Errorf("config %s (a mattermost-push-proxy config.json; pushrelay migrate %s prints the YAML it becomes, "+
			"to complete): %w", path, path, probs)
	}
	return fmt.Errorf("config %s: %w", path, probs)
}

// CheckConfig is LoadConfig, and then loads every credential, secret and
// certificate the configuration names, as the relay would at startup,
// without opening the spool, a listener or a connection. It reports every
// problem at once, in file order, where LoadConfig would stop before the
// credentials. legacy is LoadConfig's; build makes each app's provider, as
// it does for NewServer, to load its credentials (nil loads none).
func CheckConfig(path string, legacy Legacy, build Providers) (*Config, error) {
	cfg, probs, old := loadConfig(path, legacy, os.LookupEnv, os.Environ())
	if cfg != nil {
		probs = append(probs, checkCredentials(cfg, build, probs)...)
		probs.sort()
	}
	if len(probs) > 0 {
		return nil, configError(path, old, cfg == nil, probs)
	}
	return cfg, nil
}

// Problem is one thing wrong in a configuration: its message names the key.
type Problem struct {
	Line int // the line of the key in the file, 0 when not from the file
	Err  error
}

// Problems lists every problem of a configuration, in file order; those
// that do not come from a line of the file (environment variables,
// defaults) last.
type Problems []Problem

// Error lists the problems one per line.
func (p Problems) Error() string {
	if len(p) == 1 {
		return p[0].Err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems:", len(p))
	for _, pr := range p {
		b.WriteString("\n")
		b.WriteString(pr.Err.Error())
	}
	return b.String()
}

// Unwrap returns the problems' errors, for errors.Is and errors.As.
func (p Problems) Unwrap() []error {
	out := make([]error, len(p))
	for i, pr := range p {
		out[i] = pr.Err
	}
	return out
}

func (p Problems) sort() {
	slices.SortStableFunc(p, func(a, b Problem) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return a.Line - b.Line
	})
}

// envNotKeys are PUSHRELAY_* variables that are not configuration keys.
var envNotKeys = []string{"PUSHRELAY_CONFIG", "PUSHRELAY_BENCH_LOOKALIKES", "PUSHRELAY_HELM"}

// Legacy converts a configuration file of another format into pushrelay
// YAML as it is loaded: cmd/pushrelay passes the one for
// mattermost-push-proxy's config.json (its internal/migrate). It returns
// nil and no error when data is not of its format, and an error naming the
// old key at fault when it is but cannot be read. path is the file's, for
// making its relative paths absolute; lookupEnv stands in for the
// environment.
type Legacy func(data []byte, path string, lookupEnv func(string) (string, bool)) (*Converted, error)

// Converted is a configuration a Legacy converted.
type Converted struct {
	YAML    []byte            // the pushrelay YAML it became
	Notes   []string          // what each old key became (Config.Migrated)
	Sources map[string]string // for a YAML key, the old key it came from, so that errors name that one
}

// loadConfig is LoadConfig; old says the file was of legacy's format.
func loadConfig(path string, legacy Legacy, lookupEnv func(string) (string, bool), environ []string) (cfg *Config, probs Problems, old bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{Err: err}}, false
	}
	known := envKeys(reflect.TypeOf(Config{}), "PUSHRELAY")
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "PUSHRELAY_") || slices.Contains(envNotKeys, name) || slices.Contains(known, name) {
			continue
		}
		hint := ""
		if strings.HasPrefix(name, "PUSHRELAY_APPS") || strings.HasPrefix(name, "PUSHRELAY_POLICY_RULES") {
			hint = " (apps and policy.rules come from the file only)"
		}
		probs = append(probs, Problem{Err: fmt.Errorf("%s: this environment variable names no configuration key%s", name, hint)})
	}
	if legacy != nil {
		mig, err := legacy(data, path, lookupEnv)
		if err != nil {
			return nil, append(Problems{{Err: err}}, probs...), true
		}
		if mig != nil {
			cfg, more := parse(mig.YAML, "", lookupEnv)
			for i := range more {
				more[i].Err = oldKeyError(more[i].Err, mig.Sources)
			}
			cfg.Migrated = mig.Notes
			return cfg, append(more, probs...), true
		}
	}
	cfg, more := parse(data, filepath.Dir(path), lookupEnv)
	return cfg, append(more, probs...), false
}

// oldKeyError renames the converted YAML's key an error starts with to the
// old file's JSON key it came from, and drops the YAML's line number.
func oldKeyError(err error, sources map[string]string) error {
	msg := yamlLineSuffix.ReplaceAllString(err.Error(), "")
	key, rest, ok := strings.Cut(msg, ": ")
	if !ok {
		return errors.New(msg)
	}
	for k := key; k != ""; {
		if src, ok := sources[k]; ok {
			return fmt.Errorf("%s (%s): %s", src, key, rest)
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return errors.New(msg)
}

var yamlLineSuffix = regexp.MustCompile(` \(line \d+\)`)

// ParseConfig is LoadConfig on bytes, with lookupEnv standing in for the
// environment (nil for none). Relative paths stay relative to the working
// directory.
func ParseConfig(data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	cfg, probs := parse(data, "", lookupEnv)
	if len(probs) > 0 {
		return nil, probs
	}
	return cfg, nil
}

// parse decodes data over the defaults, makes relative paths of the file
// relative to dir (unless dir is ""), applies the environment and
// validates. It returns the configuration (nil only when data is not
// YAML) and every problem, in file order.
func parse(data []byte, dir string, lookupEnv func(string) (string, bool)) (*Config, Problems) {
	cfg := Defaults()
	var probs Problems
	keyLines := map[string]int{}
	if len(bytes.TrimSpace(data)) > 0 {
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, Problems{{Err: err}}
		}
		lines := map[int]string{}
		if len(doc.Content) > 0 {
			var shape []Problem
			checkKeys(doc.Content[0], reflect.TypeOf(cfg), "", lines, keyLines, &shape)
			probs = append(probs, shape...)
			if err := doc.Content[0].Decode(&cfg); err != nil {
				for _, p := range keyedYAMLErrors(err, lines) {
					if !slices.ContainsFunc(shape, func(s Problem) bool { return s.Line == p.Line && p.Line != 0 }) {
						probs = append(probs, p)
					}
				}
			}
		}
	}
	cfg.lines = keyLines
	if dir != "" {
		cfg.resolvePaths(dir)
	}
	if lookupEnv != nil {
		if err := applyEnv(reflect.ValueOf(&cfg).Elem(), "PUSHRELAY", "", lookupEnv); err != nil {
			probs = append(probs, Problem{Err: err})
		}
	}
	for _, err := range cfg.problems() {
		probs = append(probs, Problem{Line: lineOf(err, keyLines), Err: err})
	}
	probs.sort()
	return &cfg, probs
}

// lineOf finds the file line of the key an error message starts with (or
// of the nearest enclosing key the file has), 0 when the file has none.
func lineOf(err error, keyLines map[string]int) int {
	key, _, _ := strings.Cut(err.Error(), ":")
	key, _, _ = strings.Cut(key, ",")
	key, _, _ = strings.Cut(key, " ")
	for key != "" {
		if l, ok := keyLines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// resolvePaths makes every relative file path of c relative to dir.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	abs(&c.TLS.ClientCAFile)
	abs(&c.Auth.SecretsFile)
	abs(&c.Egress.CAFile)
	abs(&c.Spool.Dir)
	for i := range c.Apps {
		if a := c.Apps[i].APNs; a != nil {
			abs(&a.AuthKeyFile)
			abs(&a.CertFile)
			abs(&a.CertPasswordFile)
		}
		if f := c.Apps[i].FCM; f != nil {
			abs(&f.ServiceAccountFile)
		}
	}
}

// envKeys lists the PUSHRELAY_* names applyEnv reads for t.
func envKeys(t reflect.Type, env string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == durationType {
		if t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.String {
			return nil // lists of mappings come from the file only
		}
		return []string{env}
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		out = append(out, envKeys(t.Field(i).Type, env+"_"+strings.ToUpper(name))...)
	}
	return out
}

// checkKeys walks the YAML tree against the Go type and reports every key
// the type does not have, naming its full path, and every value of the
// wrong shape. It also records which key each line holds, so that type
// errors can name their key too.
func checkKeys(n *yaml.Node, t reflect.Type, path string, lines map[int]string, keyLines map[string]int, probs *[]Problem) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if path != "" {
		if _, ok := lines[n.Line]; !ok {
			lines[n.Line] = path
		}
		if _, ok := keyLines[path]; !ok {
			keyLines[path] = n.Line
		}
	}
	bad := func(line int, format string, args ...any) {
		*probs = append(*probs, Problem{Line: line, Err: fmt.Errorf(format, args...)})
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fieldByTag(t, k.Value)
			key := join(path, k.Value)
			if !ok {
				bad(k.Line, "%s: unknown key (line %d)", key, k.Line)
				continue
			}
			lines[k.Line] = key
			keyLines[key] = k.Line
			checkKeys(v, f.Type, key, lines, keyLines, probs)
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, item := range n.Content {
			checkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines, keyLines, probs)
		}
	case n.Kind == yaml.MappingNode && t.Kind() != reflect.Map:
		bad(n.Line, "%s: expected a single value, got a mapping (line %d)", path, n.Line)
	case n.Kind == yaml.SequenceNode:
		bad(n.Line, "%s: expected %s, got a list (line %d)", path, kindName(t), n.Line)
	case n.Kind == yaml.ScalarNode && (t.Kind() == reflect.Struct || t.Kind() == reflect.Slice) && n.Tag != "!!null":
		bad(n.Line, "%s: expected %s, got %q (line %d)", path, kindName(t), n.Value, n.Line)
	}
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	}
	return "a single value"
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if strings.Split(f.Tag.Get("yaml"), ",")[0] == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

// keyedYAMLErrors rewrites yaml's "line N: cannot unmarshal ..." into
// "KEY: cannot unmarshal ... (line N)", one problem each.
func keyedYAMLErrors(err error, lines map[int]string) []Problem {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []Problem{{Err: err}}
	}
	out := make([]Problem, 0, len(te.Errors))
	for _, e := range te.Errors {
		m := yamlLine.FindStringSubmatch(e)
		if m == nil {
			out = append(out, Problem{Err: errors.New(e)})
			continue
		}
		line, _ := strconv.Atoi(m[1])
		if key, ok := lines[line]; ok {
			out = append(out, Problem{Line: line, Err: fmt.Errorf("%s: %s (line %d)", key, m[2], line)})
		} else {
			out = append(out, Problem{Line: line, Err: errors.New(e)})
		}
	}
	return out
}

var durationType = reflect.TypeOf(time.Duration(0))

// applyEnv sets every scalar (and list of scalars, comma-separated) from
// PUSHRELAY_<PATH> when that variable exists. Lists of mappings (apps,
// policy rules) are file-only.
func applyEnv(v reflect.Value, env, key string, lookup func(string) (string, bool)) error {
	t := v.Type()
	if t.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil // optional sections (an app's apns/fcm) come from the file only
		}
		return applyEnv(v.Elem(), env, key, lookup)
	}
	if t.Kind() == reflect.Struct {
		for i := 0; i < t.NumField(); i++ {
			name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if name == "" || name == "-" {
				continue
			}
			if err := applyEnv(v.Field(i), env+"_"+strings.ToUpper(name), join(key, name), lookup); err != nil {
				return err
			}
		}
		return nil
	}
	raw, ok := lookup(env)
	if !ok {
		return nil
	}
	bad := func(err error) error { return fmt.Errorf("%s (from %s): %w", key, env, err) }
	switch {
	case t == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return bad(err)
		}
		v.SetInt(int64(d))
	case t.Kind() == reflect.String:
		v.SetString(raw)
	case t.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return bad(err)
		}
		v.SetBool(b)
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		i, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return bad(err)
		}
		v.SetInt(i)
	case t.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return bad(err)
		}
		v.SetFloat(f)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		v.Set(reflect.ValueOf(items))
	}
	return nil
}

// Validate checks every key that can be checked without reading files or
// touching the network. Errors name the key; all of them are returned,
// joined.
func (c *Config) Validate() error {
	return errors.Join(c.problems()...)
}

// appleID matches Apple's 10-character key and team ids.
var appleID = regexp.MustCompile(`^[A-Z0-9]{10}$`)

func (c *Config) problems() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := CheckAddr(c.Listen); err != nil {
		add("listen: %v", err)
	}
	if c.Metrics.Listen != "" {
		if err := CheckAddr(c.Metrics.Listen); err != nil {
			add("metrics.listen: %v", err)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls: cert_file and key_file go together")
	}
	if c.TLS.ClientCAFile != "" && c.TLS.CertFile == "" {
		add("tls.client_ca_file: needs tls.cert_file and tls.key_file (mutual TLS is TLS)")
	}
	if _, err := parsePrefixes(c.Auth.AllowedNetworks, "auth.allowed_networks"); err != nil {
		errs = append(errs, err)
	}
	if _, err := parsePrefixes(c.Auth.TrustedProxies, "auth.trusted_proxies"); err != nil {
		errs = append(errs, err)
	}
	if c.Limits.MaxBodyBytes <= 0 {
		add("limits.max_body_bytes: must be positive")
	}
	if c.Limits.MaxInFlight <= 0 {
		add("limits.max_in_flight: must be positive")
	}
	if c.Limits.RatePerClient < 0 || c.Limits.Burst < 0 {
		add("limits.rate_per_client, limits.burst: must not be negative (0 turns rate limiting off)")
	}
	if c.Limits.MaxHeaderBytes < 4<<10 || c.Limits.MaxHeaderBytes > 64<<10 {
		// Every open connection holds a read buffer this large.
		add("limits.max_header_bytes: must be between 4096 and 65536")
	}
	for _, t := range []struct {
		key string
		d   time.Duration
	}{{"limits.read_header_timeout", c.Limits.ReadHeaderTimeout}, {"limits.read_timeout", c.Limits.ReadTimeout}, {"limits.idle_timeout", c.Limits.IdleTimeout}} {
		if t.d <= 0 {
			add("%s: must be positive", t.key)
		}
	}
	if _, err := policy.New(c.Policy); err != nil {
		errs = append(errs, err)
	}
	if c.Delivery.Timeout <= 0 || c.Delivery.Timeout >= 30*time.Second {
		add("delivery.timeout: must be between 0 and 30s (the Mattermost server gives up after 30s), got %s", c.Delivery.Timeout)
	}
	if c.Delivery.Backoff.Initial <= 0 || c.Delivery.Backoff.Max < c.Delivery.Backoff.Initial {
		add("delivery.backoff: initial must be positive and max at least initial")
	}
	if c.Spool.MaxAge <= 0 {
		add("spool.max_age: must be positive")
	}
	if c.Spool.Dir == "" && c.Spool.NATSURL == "" {
		add("spool.dir: required unless spool.nats_url is set")
	}
	if c.Spool.MaxMessages <= 0 || c.Spool.MaxBytes <= 0 {
		add("spool.max_messages, spool.max_bytes: must be positive")
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		add("log.format: %q is not json or text", c.Log.Format)
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		add("log.level: %v", err)
	}
	if len(c.Apps) == 0 {
		add("apps: at least one app is required")
	}
	seen := map[string]int{}
	for i, a := range c.Apps {
		key := fmt.Sprintf("apps[%d]", i)
		if a.Platform == "" {
			add("%s.platform: required (a Mattermost platform name such as apple_rn, or \"*\")", key)
		} else if j, dup := seen[a.Platform]; dup {
			add("%s.platform: %q is already configured by apps[%d]", key, a.Platform, j)
		} else if base, _ := wire.SplitPlatform(a.Platform); base != a.Platform {
			add("%s.platform: %q is never routed to: Mattermost's -vN suffix (the app's version) is removed before the "+
				"lookup; use %q", key, a.Platform, base)
		}
		seen[a.Platform] = i
		n := 0
		if a.APNs != nil {
			n++
			apnsErr := a.APNs.Validate()
			if apnsErr != nil {
				add("%s.%v", key, apnsErr)
			}
			// Validate stops at its first problem; name every missing part
			// of a token key at once.
			if a.APNs.CertFile == "" {
				for _, f := range []struct{ name, value, what string }{
					{"key_id", a.APNs.KeyID, "the key's 10-character id, as in AuthKey_ABC123DEFG.p8"},
					{"team_id", a.APNs.TeamID, "your Apple team id, 10 characters"},
				} {
					if f.value == "" && (apnsErr == nil || !strings.HasPrefix(apnsErr.Error(), "apns."+f.name+":")) {
						add("%s.apns.%s: required with token auth (%s)", key, f.name, f.what)
					}
				}
			}
			if a.APNs.KeyID != "" && !appleID.MatchString(a.APNs.KeyID) {
				add("%s.apns.key_id: %q is not an Apple key id (10 capital letters and digits, as in AuthKey_ABC123DEFG.p8)", key, a.APNs.KeyID)
			}
			if a.APNs.TeamID != "" && !appleID.MatchString(a.APNs.TeamID) {
				add("%s.apns.team_id: %q is not an Apple team id (10 capital letters and digits, under Membership in your Apple developer account)", key, a.APNs.TeamID)
			}
		}
		if a.FCM != nil {
			n++
			if err := a.FCM.Validate(); err != nil {
				add("%s.%v", key, err)
			}
		}
		if a.Upstream != nil {
			n++
			if err := a.Upstream.Validate(); err != nil {
				add("%s.%v", key, err)
			} else if strings.HasPrefix(strings.ToLower(a.Upstream.URL), "http://") {
				add("%s.upstream.url: http:// is refused: a push proxy is reached over TLS only (https://...), "+
					"and notifications never cross a network in clear text", key)
			}
		}
		if n != 1 {
			add("%s: needs exactly one of apns, fcm or upstream", key)
		}
	}
	return errs
}

// CheckAddr reports whether addr is a host:port to listen on (the host may
// be empty), saying what is wrong with it if not.
func CheckAddr(addr string) error {
	if addr == "" {
		return errors.New("required (host:port, e.g. \":8066\")")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// checkCredentials loads what each part of cfg names that has no problem
// yet (probs): each app's provider credentials, the shared secrets, the TLS
// certificates, as the relay would at startup. Each error names its key.
func checkCredentials(cfg *Config, build Providers, probs Problems) Problems {
	has := func(prefix string) bool {
		return slices.ContainsFunc(probs, func(p Problem) bool {
			// The key part of the message: "apps[0].apns.topic", or for the
			// old proxy's file "ApplePushSettings[0].ApplePushTopic (apps[0].apns.topic)".
			key, _, _ := strings.Cut(p.Err.Error(), ": ")
			for _, k := range strings.FieldsFunc(key, func(r rune) bool { return r == ' ' || r == '(' || r == ')' || r == ',' }) {
				if k == prefix || strings.HasPrefix(k, prefix+".") {
					return true
				}
			}
			return false
		})
	}
	var out Problems
	add := func(_ string, err error) {
		out = append(out, Problem{Line: lineOf(err, cfg.lines), Err: err})
	}
	if !has("egress") {
		var hosts []string
		for i, a := range cfg.Apps {
			if has(fmt.Sprintf("apps[%d]", i)) {
				continue
			}
			h, err := AppHosts(&Config{Apps: []AppConfig{a}})
			if err != nil {
				add(fmt.Sprintf("apps[%d]", i), fmt.Errorf("apps[%d]%s", i, strings.TrimPrefix(err.Error(), "apps[0]")))
				continue
			}
			hosts = append(hosts, h...)
		}
		eg, err := egress.New(cfg.Egress, hosts, nil)
		if err != nil {
			add("egress", err)
		} else {
			for i, a := range cfg.Apps {
				key := fmt.Sprintf("apps[%d]", i)
				if has(key) || slices.ContainsFunc(out, func(p Problem) bool { return strings.HasPrefix(p.Err.Error(), key) }) {
					continue
				}
				var p any
				var err error
				if a.Kind() != "" && build != nil {
					p, err = build(a, eg)
				}
				if err != nil {
					add(key, fmt.Errorf("%s.%w", key, err))
				} else if c, ok := p.(interface{ Close() }); ok {
					c.Close()
				}
			}
			eg.CloseIdleConnections()
		}
	}
	if !has("auth") {
		if _, err := newAuthorizer(cfg.Auth); err != nil {
			add("auth", err)
		}
	}
	if cfg.TLS.CertFile != "" && !has("tls") {
		if _, err := serverTLS(cfg.TLS); err != nil {
			add("tls", err)
		}
	}
	return out
}
