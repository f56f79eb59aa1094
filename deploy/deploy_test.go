package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pushrelay/pushrelay/providers"
	"github.com/pushrelay/pushrelay/providers/egress"
	"github.com/pushrelay/pushrelay/providers/upstream"
	"github.com/pushrelay/pushrelay/relay"
)

// relayMetrics are the metric families the relay registers (relay/metrics.go,
// the spool gauges included). A scrape of a fresh relay shows only some of
// them (a vector without children is absent from the output), so the
// dashboard and the alert rules are checked against this list too, and the
// list itself against the source: every name must appear there.
var relayMetrics = []string{
	"pushrelay_notifications_total",
	"pushrelay_provider_request_duration_seconds",
	"pushrelay_provider_errors_total",
	"pushrelay_policy_fields_removed_total",
	"pushrelay_ingress_requests_total",
	"pushrelay_ingress_rejected_total",
	"pushrelay_ingress_request_duration_seconds",
	"pushrelay_in_flight",
	"pushrelay_egress_denied_total",
	"pushrelay_egress_errors_total",
	"pushrelay_spool_errors_total",
	"pushrelay_breaker_open",
	"pushrelay_provider_quick_retries_total",
	"pushrelay_dead_tokens_remembered",
	"pushrelay_credential_expiry_timestamp_seconds",
	"pushrelay_spool_messages",
	"pushrelay_spool_oldest_age_seconds",
	"pushrelay_spool_redeliveries_total",
	"pushrelay_acks_total",
	"pushrelay_delivery_latency_seconds",
	"pushrelay_build_info",
}

// TestDeployMetricAllowlistMatchesSource fails when relayMetrics names a metric
// the relay's source does not define (a rename or a removal).
func TestDeployMetricAllowlistMatchesSource(t *testing.T) {
	src := relaySource(t)
	for _, name := range relayMetrics {
		if !strings.Contains(src, strconv.Quote(name)) {
			t.Errorf("relayMetrics lists %s, which relay/metrics.go and relay/spool do not define: update the list, the dashboard and the alert rules", name)
		}
	}
}

// relaySource is the text of the relay's non-test Go files that define
// metrics: relay/*.go and relay/spool/*.go.
func relaySource(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, pattern := range []string{"../relay/*.go", "../relay/spool/*.go"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(data)
		}
	}
	if !strings.Contains(b.String(), "pushrelay_notifications_total") {
		t.Fatal("relay source not found (run the test from the deploy directory)")
	}
	return b.String()
}

// knownMetrics is the union of the families a real relay exports on
// /metrics and relayMetrics.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	for _, name := range relayMetrics {
		known[name] = true
	}
	scraped := scrapeRelay(t)
	for _, name := range scraped {
		if strings.HasPrefix(name, "pushrelay_") && !known[name] {
			t.Logf("the relay exports %s, which relayMetrics does not list (add it)", name)
		}
		known[name] = true
	}
	return known
}

// scrapeRelay starts a relay on loopback (one upstream app, the embedded
// spool in a temporary directory, no connection made) and returns the metric
// families its /metrics lists.
func scrapeRelay(t *testing.T) []string {
	t.Helper()
	cfg := relay.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.Spool.Dir = t.TempDir()
	cfg.Apps = []relay.AppConfig{{Platform: "*", Upstream: &upstream.Config{URL: "https://push.mattermost.com"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// Its one app is an upstream push proxy: the test builds that provider
	// as cmd/pushrelay would.
	build := func(a relay.AppConfig, eg *egress.Egress) (providers.Provider, error) {
		return upstream.New(*a.Upstream, eg)
	}
	srv, err := relay.NewServer(&cfg, build, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	resp, err := http.Get("http://" + srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	var names []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// "# TYPE name type" in the text exposition format.
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			names = append(names, f[2])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, "pushrelay_build_info") {
		t.Fatalf("/metrics does not list pushrelay_build_info; it lists %v", names)
	}
	return names
}

var metricToken = regexp.MustCompile(`\bpushrelay_[a-z_]+`)

// metricNames returns the pushrelay_ metric families text refers to, with
// the histogram series suffixes stripped.
func metricNames(text string) []string {
	seen := map[string]bool{}
	for _, m := range metricToken.FindAllString(text, -1) {
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			m = strings.TrimSuffix(m, suffix)
		}
		seen[m] = true
	}
	names := make([]string, 0, len(seen))
	for m := range seen {
		names = append(names, m)
	}
	sort.Strings(names)
	return names
}

func checkMetricNames(t *testing.T, what, text string, known map[string]bool) []string {
	t.Helper()
	names := metricNames(text)
	for _, name := range names {
		if !known[name] {
			t.Errorf("%s uses %s, which the relay does not export", what, name)
		}
	}
	return names
}

// checkBalanced is a sanity check for PromQL (there is no PromQL parser in
// this module's dependencies): brackets balance outside string literals.
func checkBalanced(expr string) error {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	var quote rune
	for i, r := range expr {
		switch {
		case quote != 0:
			if r == quote && (i == 0 || expr[i-1] != '\\') {
				quote = 0
			}
		case r == '"' || r == '\'' || r == '`':
			quote = r
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case r == ')' || r == ']' || r == '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return fmt.Errorf("unbalanced %q at offset %d", r, i)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if quote != 0 {
		return errors.New("unterminated string")
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return nil
}

func TestDeployDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana/pushrelay-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title         string  `json:"title"`
		UID           string  `json:"uid"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Error("dashboard: title and uid are required")
	}
	if dash.SchemaVersion < 36 {
		t.Errorf("dashboard: schemaVersion %d; want 36 or later (datasource references by uid)", dash.SchemaVersion)
	}
	hasDS := false
	for _, v := range dash.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
	}
	if !hasDS {
		t.Error(`dashboard: no "datasource" variable of type datasource (query prometheus)`)
	}

	ids := map[int]string{}
	var exprs []string
	for _, p := range dash.Panels {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel %q: id %d already used by %q", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || p.Description == "" {
			t.Errorf("panel %d: title and description are required", p.ID)
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource uid %q; want ${datasource}", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" {
				t.Errorf("panel %q: a target without expr or refId", p.Title)
			}
			if tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: target datasource uid %q; want ${datasource}", p.Title, tg.Datasource.UID)
			}
			if err := checkBalanced(tg.Expr); err != nil {
				t.Errorf("panel %q: %s: %v", p.Title, tg.Expr, err)
			}
			exprs = append(exprs, tg.Expr)
		}
	}

	// Every metric name anywhere in the file, queries and variables alike.
	used := checkMetricNames(t, "dashboard", string(data), knownMetrics(t))
	for _, want := range []string{
		"pushrelay_notifications_total", "pushrelay_provider_request_duration_seconds",
		"pushrelay_provider_errors_total", "pushrelay_spool_messages", "pushrelay_spool_oldest_age_seconds",
		"pushrelay_spool_redeliveries_total", "pushrelay_ingress_rejected_total", "pushrelay_egress_denied_total",
		"pushrelay_in_flight", "pushrelay_policy_fields_removed_total", "pushrelay_credential_expiry_timestamp_seconds",
	} {
		if !slices.Contains(used, want) {
			t.Errorf("dashboard: no panel shows %s", want)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{"histogram_quantile(0.5,", "histogram_quantile(0.99,", "by (outcome)", "by (app"} {
		if !strings.Contains(all, want) {
			t.Errorf("dashboard: no query contains %q", want)
		}
	}
}

type panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr       string `json:"expr"`
		RefID      string `json:"refId"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
}

type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// promTemplateFuncs stand in for the functions Prometheus offers alert
// templates, enough to parse and execute the annotations.
var promTemplateFuncs = template.FuncMap{
	"humanize":           func(any) string { return "1" },
	"humanize1024":       func(any) string { return "1" },
	"humanizeDuration":   func(any) string { return "1s" },
	"humanizePercentage": func(any) string { return "1%" },
	"humanizeTimestamp":  func(any) string { return "1970" },
	"title":              strings.ToTitle,
	"toUpper":            strings.ToUpper,
	"toLower":            strings.ToLower,
}

func TestDeployAlertRules(t *testing.T) {
	data, err := os.ReadFile("prometheus/pushrelay-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var rf ruleFile
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alert rules: %v", err)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("alert rules: no groups")
	}
	known := knownMetrics(t)
	known["up"] = true
	var exprs []string
	names := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: name and rules are required", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %q: a rule without alert (recording rules do not belong here)", g.Name)
				continue
			}
			if names[r.Alert] {
				t.Errorf("alert %s: defined twice", r.Alert)
			}
			names[r.Alert] = true
			if r.Expr == "" {
				t.Errorf("alert %s: no expr", r.Alert)
			}
			if err := checkBalanced(r.Expr); err != nil {
				t.Errorf("alert %s: expr: %v", r.Alert, err)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for: %v", r.Alert, err)
				}
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("alert %s: severity label %q; want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			for _, key := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[key]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, key)
				}
			}
			for key, text := range r.Annotations {
				if err := checkAlertTemplate(text); err != nil {
					t.Errorf("alert %s: annotation %s: %v", r.Alert, key, err)
				}
			}
			exprs = append(exprs, r.Expr)
			checkMetricNames(t, "alert "+r.Alert, r.Expr+"\n"+fmt.Sprint(r.Annotations), known)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{
		"up{", "absent(", `outcome="expired"`, "failed|expired", "pushrelay_spool_messages",
		"pushrelay_spool_oldest_age_seconds", "pushrelay_credential_expiry_timestamp_seconds - time()",
		"30 * 86400", "pushrelay_egress_denied_total", "pushrelay_ingress_rejected_total",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("alert rules: no expr contains %q", want)
		}
	}
}

// checkAlertTemplate parses and runs an annotation the way Prometheus
// does: with $labels, $externalLabels and $value defined.
func checkAlertTemplate(text string) error {
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}"
	tmpl, err := template.New("annotation").Funcs(promTemplateFuncs).Option("missingkey=zero").Parse(defs + text)
	if err != nil {
		return err
	}
	data := struct {
		Labels, ExternalLabels map[string]string
		Value                  float64
	}{map[string]string{"app": "apple_rn", "instance": "relay:9066"}, map[string]string{}, 1}
	return tmpl.Execute(io.Discard, data)
}

// unit is a systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: not key=value in a section: %q", path, n+1, line)
			}
			u[section][strings.TrimSpace(key)] = append(u[section][strings.TrimSpace(key)], strings.TrimSpace(value))
		}
	}
	return u
}

func TestDeploySystemdUnit(t *testing.T) {
	const path = "systemd/pushrelay.service"
	u := parseUnit(t, path)
	svc := u["Service"]
	if svc == nil || u["Unit"] == nil || u["Install"] == nil {
		t.Fatalf("%s: wants [Unit], [Service] and [Install] sections; has %v", path, u)
	}
	// Keys whose last value must be exactly this.
	for key, want := range map[string]string{
		"StateDirectory":          "pushrelay",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"KillSignal":              "SIGTERM",
		"Restart":                 "on-failure",
		"Environment":             "PUSHRELAY_CONFIG=/etc/pushrelay/pushrelay.yaml",
		"WorkingDirectory":        "/etc/pushrelay",
		"PrivateMounts":           "yes",
		"PrivateUsers":            "yes",
	} {
		v, ok := svc[key]
		if !ok {
			t.Errorf("%s: [Service] %s= is missing (want %q)", path, key, want)
			continue
		}
		if got := v[len(v)-1]; got != want {
			t.Errorf("%s: [Service] %s=%s; want %q", path, key, got, want)
		}
	}
	if !slices.Contains(svc["SystemCallFilter"], "@system-service") {
		t.Errorf("%s: SystemCallFilter=@system-service is missing", path)
	}
	if !slices.Contains(svc["ExecReload"], "/bin/kill -HUP $MAINPID") {
		t.Errorf("%s: ExecReload=/bin/kill -HUP $MAINPID is missing (SIGHUP reloads policy, credentials, secrets, certificates)", path)
	}
	if start := strings.Fields(strings.Join(svc["ExecStart"], " ")); len(start) < 2 || start[1] != "serve" {
		t.Errorf("%s: ExecStart=%v; want the pushrelay binary with serve", path, svc["ExecStart"])
	}
	// The relay drains for up to 30 s on SIGTERM.
	if v := svc["TimeoutStopSec"]; len(v) == 0 || atoi(v[len(v)-1]) <= 30 {
		t.Errorf("%s: TimeoutStopSec=%v; want more than 30 (the relay's drain)", path, v)
	}
	if v := svc["LimitNOFILE"]; len(v) == 0 || atoi(v[len(v)-1]) < 4096 {
		t.Errorf("%s: LimitNOFILE=%v; want at least 4096 (limits.max_in_flight's default)", path, v)
	}
	dynamic := len(svc["DynamicUser"]) > 0 && svc["DynamicUser"][0] == "yes"
	if user := svc["User"]; !dynamic && (len(user) == 0 || user[0] == "" || user[0] == "root" || user[0] == "0") {
		t.Errorf("%s: runs as root; want DynamicUser=yes or User=pushrelay", path)
	}
	if len(u["Install"]["WantedBy"]) == 0 {
		t.Errorf("%s: [Install] WantedBy= is missing", path)
	}
	// systemd's own checker, where there is one (not on the CI machine).
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		data, _ := os.ReadFile(path)
		start := regexp.MustCompile(`(?m)^(ExecStart|ExecReload)=/usr/local/bin/pushrelay`)
		tmp := filepath.Join(t.TempDir(), "pushrelay.service")
		// verify wants the binary to exist: stand in /bin/true for it.
		if err := os.WriteFile(tmp, start.ReplaceAll(data, []byte("$1=/bin/true")), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sa, "verify", tmp).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify %s: %v\n%s", path, err, out)
		}
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

func TestDeploySysusersFile(t *testing.T) {
	data, err := os.ReadFile("systemd/pushrelay.sysusers.conf")
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, "systemd/pushrelay.service")
	user := u["Service"]["User"]
	if len(user) == 0 {
		return // DynamicUser: no sysusers file needed
	}
	if !regexp.MustCompile(`(?m)^u ` + regexp.QuoteMeta(user[0]) + ` `).Match(data) {
		t.Errorf("systemd/pushrelay.sysusers.conf does not create User=%s", user[0])
	}
}

func TestDeployDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	module := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(mod), "\n", 2)[0], "module"))
	// The -X flags must name package-level string variables, or the linker
	// ignores them silently: these compile only while relay.Version and
	// relay.Commit are such variables.
	var _, _ *string = &relay.Version, &relay.Commit
	for _, want := range []string{
		"FROM ${GO_IMAGE} AS build", "ARG GO_IMAGE=docker.io/library/golang:${GO_VERSION}-", "CGO_ENABLED=0", "-trimpath", `-s -w`,
		"-tags nodemo", "ARG BASE_IMAGE=gcr.io/distroless/",
		"-X " + module + "/relay.Version=${VERSION}", "-X " + module + "/relay.Commit=${COMMIT}",
		"ARG VERSION", "ARG COMMIT", "./cmd/pushrelay",
		"distroless/static", ":nonroot", "USER 65532:65532",
		"ENV PUSHRELAY_CONFIG=/etc/pushrelay/pushrelay.yaml", `VOLUME ["/var/lib/pushrelay"]`,
		"EXPOSE 8066 9066", "STOPSIGNAL SIGTERM", `ENTRYPOINT ["/pushrelay"]`, `CMD ["serve"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile: no %q", want)
		}
	}
	// The build image is exactly go.mod's Go, never a floating tag below it.
	goLine := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(string(mod))
	if goLine == nil || !strings.Contains(df, "ARG GO_VERSION="+goLine[1]+"\n") {
		t.Errorf("Dockerfile: ARG GO_VERSION is not go.mod's exact version %v", goLine)
	}
	for _, from := range regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1) {
		if !strings.HasPrefix(from[1], "${") && !strings.Contains(strings.SplitN(from[1], "/", 2)[0], ".") {
			t.Errorf("Dockerfile: FROM %s has no registry host (Buildah and Podman refuse short names)", from[1])
		}
	}
	if strings.Contains(df, "\nHEALTHCHECK ") {
		t.Error("Dockerfile: HEALTHCHECK needs an HTTP client the image does not have (see the comment)")
	}
	// The defaults the image relies on.
	def := relay.Defaults()
	if def.Spool.Dir != "/var/lib/pushrelay" || def.Listen != ":8066" || def.Metrics.Listen != ":9066" {
		t.Errorf("relay defaults changed (spool.dir %q, listen %q, metrics.listen %q): update the Dockerfile, the chart and the unit",
			def.Spool.Dir, def.Listen, def.Metrics.Listen)
	}
}

func TestDeployExamplesExplainThemselves(t *testing.T) {
	files, _ := filepath.Glob("examples/*.yaml")
	for _, want := range []string{"direct.yaml", "corporate-proxy.yaml", "app-store-apps.yaml", "two-replicas-nats.yaml"} {
		if !slices.Contains(files, filepath.Join("examples", want)) {
			t.Errorf("examples/%s is missing", want)
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := relay.ParseConfig(data, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if n := strings.Count(string(data), "#"); n < 3 {
			t.Errorf("%s: %d comment(s); an example explains its choices", f, n)
		}
	}
}

const chartDir = "helm/pushrelay"

func TestDeployHelmChartFiles(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		APIVersion   string            `yaml:"apiVersion"`
		Name         string            `yaml:"name"`
		Description  string            `yaml:"description"`
		Type         string            `yaml:"type"`
		Version      string            `yaml:"version"`
		AppVersion   string            `yaml:"appVersion"`
		KubeVersion  string            `yaml:"kubeVersion"`
		Keywords     []string          `yaml:"keywords"`
		Home         string            `yaml:"home"`
		Icon         string            `yaml:"icon"`
		Sources      []string          `yaml:"sources"`
		Maintainers  []map[string]any  `yaml:"maintainers"`
		Annotations  map[string]string `yaml:"annotations"`
		Dependencies []map[string]any  `yaml:"dependencies"`
		Deprecated   bool              `yaml:"deprecated"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&chart); err != nil {
		t.Fatalf("Chart.yaml: %v", err)
	}
	semver := regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
	if chart.APIVersion != "v2" || chart.Name != "pushrelay" || !semver.MatchString(chart.Version) || chart.AppVersion == "" {
		t.Errorf("Chart.yaml: apiVersion %q name %q version %q appVersion %q; want v2, pushrelay, a SemVer, an appVersion",
			chart.APIVersion, chart.Name, chart.Version, chart.AppVersion)
	}

	data, err = os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	// The default config, with the keys the chart sets (templates/_helpers.tpl,
	// pushrelay.config), is a valid relay configuration.
	cfg, _ := values["config"].(map[string]any)
	if cfg == nil {
		t.Fatal("values.yaml: no config")
	}
	cfg["listen"] = ":8066"
	cfg["metrics"] = map[string]any{"listen": ":9066"}
	cfg["spool"] = map[string]any{"dir": "/var/lib/pushrelay"}
	rendered, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := relay.ParseConfig(rendered, nil); err != nil {
		t.Errorf("values.yaml: config is not a valid relay configuration: %v\n%s", err, rendered)
	}
	checkPodSecurity(t, "values.yaml", values["podSecurityContext"], values["securityContext"])
	if g, _ := values["terminationGracePeriodSeconds"].(int); g <= 30 {
		t.Errorf("values.yaml: terminationGracePeriodSeconds %v; want more than the relay's 30 s drain", values["terminationGracePeriodSeconds"])
	}
	if sm, _ := values["serviceMonitor"].(map[string]any); sm == nil || sm["enabled"] != false {
		t.Error("values.yaml: serviceMonitor.enabled must default to false (it needs the Prometheus Operator's CRDs)")
	}

	for _, f := range []string{"_helpers.tpl", "NOTES.txt", "configmap.yaml", "statefulset.yaml", "deployment.yaml",
		"service.yaml", "serviceaccount.yaml", "pdb.yaml", "servicemonitor.yaml", "networkpolicy.yaml"} {
		if _, err := os.Stat(filepath.Join(chartDir, "templates", f)); err != nil {
			t.Error(err)
		}
	}
}

// checkPodSecurity checks a pod and a container securityContext, as values
// or as rendered.
func checkPodSecurity(t *testing.T, what string, pod, container any) {
	t.Helper()
	p, _ := pod.(map[string]any)
	c, _ := container.(map[string]any)
	if p == nil || c == nil {
		t.Errorf("%s: no pod or container securityContext", what)
		return
	}
	if p["runAsNonRoot"] != true || dig(p, "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("%s: pod securityContext %v; want runAsNonRoot and seccompProfile RuntimeDefault", what, p)
	}
	drop, _ := dig(c, "capabilities", "drop").([]any)
	if c["readOnlyRootFilesystem"] != true || c["allowPrivilegeEscalation"] != false || !slices.Contains(drop, any("ALL")) {
		t.Errorf("%s: container securityContext %v; want readOnlyRootFilesystem, no privilege escalation, drop ALL", what, c)
	}
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// TestDeployHelmRender renders the chart with helm when PUSHRELAY_HELM names a
// helm binary (.ci/run builds one) and checks what comes out: the relay
// accepts the rendered configuration, the workload kind follows the spool,
// the pod is locked down and probed. Without PUSHRELAY_HELM it is skipped.
func TestDeployHelmRender(t *testing.T) {
	helm := os.Getenv("PUSHRELAY_HELM")
	if helm == "" {
		t.Skip("PUSHRELAY_HELM is not set (.ci/run sets it to a helm binary)")
	}
	full := filepath.Join(t.TempDir(), "full.yaml")
	if err := os.WriteFile(full, []byte(`
replicaCount: 3
spool: {natsUrlSecret: {name: nats-url, key: url}}
tls: {existingSecret: relay-tls, clientCA: true}
credentials: {existingSecret: pushrelay-credentials}
configAsSecret: true
serviceMonitor: {enabled: true}
networkPolicy:
  ingress: {cidrs: [10.20.0.0/24], namespaces: [mattermost]}
  egress: {proxy: {cidrs: [10.20.0.1/32], port: 3128}}
config:
  auth: {secrets_file: /etc/pushrelay/credentials/secrets}
  apps:
    - platform: apple_rn
      apns: {topic: com.example.mm, auth_key_file: /etc/pushrelay/credentials/AuthKey.p8, key_id: ABC123DEFG, team_id: TEAM123456}
  spool: {max_bytes: 1073741824}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		args     []string
		workload string
		replicas int
		kinds    []string // also expected
		check    func(t *testing.T, cfg *relay.Config, pod map[string]any, docs map[string]map[string]any)
	}{
		{
			name: "defaults", workload: "StatefulSet", replicas: 1,
			kinds: []string{"ConfigMap", "Service", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"},
			check: func(t *testing.T, cfg *relay.Config, pod map[string]any, docs map[string]map[string]any) {
				if cfg.Spool.NATSURL != "" || cfg.Spool.Dir != "/var/lib/pushrelay" {
					t.Errorf("spool %+v; want the embedded spool in /var/lib/pushrelay", cfg.Spool)
				}
				if dig(docs["StatefulSet"], "spec", "volumeClaimTemplates") == nil {
					t.Error("StatefulSet: no volumeClaimTemplates for the spool")
				}
				if p := probe(pod, "readinessProbe"); dig(p, "httpGet", "path") != "/readyz" || dig(p, "httpGet", "scheme") != "HTTP" {
					t.Errorf("readinessProbe %v; want GET /readyz over HTTP", p)
				}
				if p := probe(pod, "livenessProbe"); dig(p, "httpGet", "path") != "/healthz" {
					t.Errorf("livenessProbe %v; want GET /healthz", p)
				}
				if _, ok := docs["ServiceMonitor"]; ok {
					t.Error("a ServiceMonitor by default")
				}
				egress, _ := dig(docs["NetworkPolicy"], "spec", "egress").([]any)
				if !strings.Contains(fmt.Sprint(egress), "port:443") || !strings.Contains(fmt.Sprint(egress), "port:53") {
					t.Errorf("NetworkPolicy egress %v; want TCP 443 and DNS", egress)
				}
				// No source named: nothing may push (port 8066 serves no TLS and no secret by default).
				if ingress := fmt.Sprint(dig(docs["NetworkPolicy"], "spec", "ingress")); strings.Contains(ingress, "port:push") {
					t.Errorf("NetworkPolicy ingress %s; want 8066 closed until a source is named", ingress)
				}
			},
		},
		{
			name: "two replicas on NATS", workload: "Deployment", replicas: 2,
			args:  []string{"--set", "replicaCount=2", "--set", "spool.natsUrl=nats://nats.nats.svc:4222"},
			kinds: []string{"ConfigMap", "Service", "PodDisruptionBudget", "NetworkPolicy"},
			check: func(t *testing.T, cfg *relay.Config, pod map[string]any, docs map[string]map[string]any) {
				if cfg.Spool.NATSURL != "nats://nats.nats.svc:4222" {
					t.Errorf("spool.nats_url %q", cfg.Spool.NATSURL)
				}
				if _, ok := docs["StatefulSet"]; ok {
					t.Error("a StatefulSet with an external spool")
				}
				if !strings.Contains(fmt.Sprint(dig(docs["NetworkPolicy"], "spec", "egress")), "port:4222") {
					t.Error("NetworkPolicy: no egress to NATS on 4222")
				}
			},
		},
		{
			name: "TLS, mTLS, credentials, NATS from a Secret, proxy", workload: "Deployment", replicas: 3,
			args:  []string{"-f", full},
			kinds: []string{"Secret", "ServiceMonitor", "NetworkPolicy"},
			check: func(t *testing.T, cfg *relay.Config, pod map[string]any, docs map[string]map[string]any) {
				if cfg.TLS.CertFile != "/etc/pushrelay/tls/tls.crt" || cfg.TLS.ClientCAFile != "/etc/pushrelay/tls/ca.crt" {
					t.Errorf("tls %+v", cfg.TLS)
				}
				if p := probe(pod, "readinessProbe"); dig(p, "tcpSocket", "port") != "push" {
					t.Errorf("readinessProbe %v; want a TCP check under mutual TLS", p)
				}
				if s := fmt.Sprint(dig(pod, "containers")); !strings.Contains(s, "PUSHRELAY_SPOOL_NATS_URL") {
					t.Error("no PUSHRELAY_SPOOL_NATS_URL from the Secret")
				}
				if s := fmt.Sprint(dig(docs["NetworkPolicy"], "spec", "egress")); !strings.Contains(s, "10.20.0.1/32") || strings.Contains(s, "port:443") {
					t.Errorf("NetworkPolicy egress %s; want the proxy only", s)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := helmTemplate(helm, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			docs := map[string]map[string]any{}
			var services []map[string]any
			dec := yaml.NewDecoder(bytes.NewReader(out))
			for {
				var doc map[string]any
				err := dec.Decode(&doc)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("rendered YAML: %v", err)
				}
				if doc == nil {
					continue
				}
				kind, _ := doc["kind"].(string)
				if kind == "Service" {
					services = append(services, doc)
				}
				if _, dup := docs[kind]; dup && kind != "Service" {
					t.Errorf("two %s", kind)
				}
				if docs[kind] == nil {
					docs[kind] = doc
				}
			}
			// A StatefulSet's serviceName must name a headless Service.
			if sts := docs["StatefulSet"]; sts != nil {
				name := dig(sts, "spec", "serviceName")
				headless := false
				for _, svc := range services {
					headless = headless || dig(svc, "metadata", "name") == name && dig(svc, "spec", "clusterIP") == "None"
				}
				if !headless {
					t.Errorf("StatefulSet serviceName %v is not a headless Service", name)
				}
			}
			for _, kind := range append(c.kinds, c.workload) {
				if docs[kind] == nil {
					t.Errorf("no %s rendered", kind)
				}
			}
			w := docs[c.workload]
			if r, _ := dig(w, "spec", "replicas").(int); r != c.replicas {
				t.Errorf("%s replicas %v; want %d", c.workload, dig(w, "spec", "replicas"), c.replicas)
			}
			pod, _ := dig(w, "spec", "template", "spec").(map[string]any)
			containers, _ := pod["containers"].([]any)
			if len(containers) != 1 {
				t.Fatalf("%s: %d containers", c.workload, len(containers))
			}
			container := containers[0].(map[string]any)
			checkPodSecurity(t, c.workload, pod["securityContext"], container["securityContext"])
			if g, _ := pod["terminationGracePeriodSeconds"].(int); g <= 30 {
				t.Errorf("terminationGracePeriodSeconds %v; want more than 30", pod["terminationGracePeriodSeconds"])
			}
			if pod["automountServiceAccountToken"] != false {
				t.Error("the service account token is mounted; the relay never talks to the API server")
			}
			// The relay accepts the configuration the chart rendered.
			cm := docs["ConfigMap"]
			field := "data"
			if cm == nil {
				cm, field = docs["Secret"], "stringData"
			}
			text, _ := dig(cm, field, "pushrelay.yaml").(string)
			cfg, err := relay.ParseConfig([]byte(text), nil)
			if err != nil {
				t.Fatalf("rendered pushrelay.yaml: %v\n%s", err, text)
			}
			if cfg.Listen != ":8066" || cfg.Metrics.Listen != ":9066" {
				t.Errorf("listen %q, metrics.listen %q; the container ports are 8066 and 9066", cfg.Listen, cfg.Metrics.Listen)
			}
			c.check(t, cfg, pod, docs)
		})
	}

	// What cannot work is refused, with a message that says what to do.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "replicaCount=2"}, "spool.natsUrl"},
		{[]string{"--set", "terminationGracePeriodSeconds=30"}, "above 30"},
		{[]string{"--set", "config.apps=null"}, "config.apps"},
	} {
		out, err := helmTemplate(helm, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("helm template %v: %v; want an error mentioning %q\n%.300s", c.args, err, c.want, out)
		}
	}
}

func probe(pod map[string]any, name string) map[string]any {
	containers, _ := pod["containers"].([]any)
	if len(containers) == 0 {
		return nil
	}
	p, _ := dig(containers[0], name).(map[string]any)
	return p
}

func helmTemplate(helm string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helm, append([]string{"template", "relay", chartDir, "--namespace", "push"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%v: %s", err, stderr.String())
	}
	return out, nil
}
