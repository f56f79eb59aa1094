package relay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pushrelay/pushrelay/policy"
	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/providers/upstream"
	"github.com/pushrelay/pushrelay/relay/spool"
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
// exactly one provider.
type AppConfig struct {
	Platform string           `yaml:"platform"`
	APNs     *apns.Config     `yaml:"apns"`
	FCM      *fcm.Config      `yaml:"fcm"`
	Upstream *upstream.Config `yaml:"upstream"`
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
// PUSHRELAY_* environment overrides and validates the result. Every error
// names the key at fault.
//
// The file may also be mattermost-push-proxy's config.json: it is converted
// with Migrate (the proxy's HTTPS_PROXY read from the environment), and
// Config.Migrated says what each of its keys became.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if IsOldProxyConfig(data) {
		converted, mapped, err := Migrate(data, os.LookupEnv)
		if err != nil {
			return nil, fmt.Errorf("config %s (a mattermost-push-proxy config.json): %w", path, err)
		}
		cfg, err := ParseConfig(converted, os.LookupEnv)
		if err != nil {
			return nil, fmt.Errorf("config %s (a mattermost-push-proxy config.json; run pushrelay migrate %s to see the converted YAML): %w", path, path, err)
		}
		cfg.Migrated = mapped
		return cfg, nil
	}
	cfg, err := ParseConfig(data, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig is LoadConfig on bytes, with lookupEnv standing in for the
// environment (nil for none).
func ParseConfig(data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	cfg := Defaults()
	if len(bytes.TrimSpace(data)) > 0 {
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, err
		}
		lines := map[int]string{}
		if len(doc.Content) > 0 {
			if err := checkKeys(doc.Content[0], reflect.TypeOf(cfg), "", lines); err != nil {
				return nil, err
			}
			if err := doc.Content[0].Decode(&cfg); err != nil {
				return nil, keyedYAMLError(err, lines)
			}
		}
	}
	if lookupEnv != nil {
		if err := applyEnv(reflect.ValueOf(&cfg).Elem(), "PUSHRELAY", "", lookupEnv); err != nil {
			return nil, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// checkKeys walks the YAML tree against the Go type and refuses any key the
// type does not have, naming its full path. It also records which key each
// line holds, so that type errors can name their key too.
func checkKeys(n *yaml.Node, t reflect.Type, path string, lines map[int]string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if path != "" {
		lines[n.Line] = path
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fieldByTag(t, k.Value)
			key := join(path, k.Value)
			if !ok {
				return fmt.Errorf("%s: unknown key (line %d)", key, k.Line)
			}
			lines[k.Line] = key
			if err := checkKeys(v, f.Type, key, lines); err != nil {
				return err
			}
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, item := range n.Content {
			if err := checkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines); err != nil {
				return err
			}
		}
	case n.Kind == yaml.MappingNode && t.Kind() != reflect.Map:
		return fmt.Errorf("%s: expected a single value, got a mapping (line %d)", path, n.Line)
	case n.Kind == yaml.SequenceNode:
		return fmt.Errorf("%s: expected %s, got a list (line %d)", path, kindName(t), n.Line)
	case n.Kind == yaml.ScalarNode && (t.Kind() == reflect.Struct || t.Kind() == reflect.Slice) && n.Tag != "!!null":
		return fmt.Errorf("%s: expected %s, got %q (line %d)", path, kindName(t), n.Value, n.Line)
	}
	return nil
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

// keyedYAMLError rewrites yaml's "line N: cannot unmarshal ..." into
// "KEY: cannot unmarshal ... (line N)".
func keyedYAMLError(err error, lines map[int]string) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		m := yamlLine.FindStringSubmatch(e)
		if m == nil {
			msgs = append(msgs, e)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		if key, ok := lines[line]; ok {
			msgs = append(msgs, fmt.Sprintf("%s: %s (line %d)", key, m[2], line))
		} else {
			msgs = append(msgs, e)
		}
	}
	return errors.New(strings.Join(msgs, "; "))
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
// touching the network. Errors name the key.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := checkAddr(c.Listen); err != nil {
		add("listen: %v", err)
	}
	if c.Metrics.Listen != "" {
		if err := checkAddr(c.Metrics.Listen); err != nil {
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
		}
		seen[a.Platform] = i
		n := 0
		if a.APNs != nil {
			n++
			if err := a.APNs.Validate(); err != nil {
				add("%s.%v", key, err)
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
			}
		}
		if n != 1 {
			add("%s: needs exactly one of apns, fcm or upstream", key)
		}
	}
	return errors.Join(errs...)
}

func checkAddr(addr string) error {
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
