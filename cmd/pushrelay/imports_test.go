package main

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/pushrelay/pushrelay/"

// deps lists, without the module prefix, the packages of ours that the
// production code of pkg links (tests left out), and all of them when all
// is set (the standard library's and other modules' too).
func deps(t *testing.T, pkg string, all bool, tags ...string) []string {
	t.Helper()
	args := []string{"list", "-deps", "-f", "{{.ImportPath}}"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.Command("go", append(args, module+pkg)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var list []string
	for _, p := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(p, module):
			if p = strings.TrimPrefix(p, module); p != pkg {
				list = append(list, p)
			}
		case all:
			list = append(list, p)
		}
	}
	return list
}

// TestImportRules holds the layout's rules (README "Layout") in production
// code: who may link whom.
func TestImportRules(t *testing.T) {
	underAny := func(p string, prefixes ...string) bool {
		return slices.ContainsFunc(prefixes, func(pre string) bool { return p == pre || strings.HasPrefix(p, pre+"/") })
	}
	type rule struct {
		pkg    string
		tags   []string
		banned func(dep string) bool
		why    string
		all    bool // the rule also holds on the standard library and other modules
	}
	// std: of the standard library, or of ours (deps strips our prefix).
	std := func(p string) bool { return !strings.Contains(strings.Split(p, "/")[0], ".") }
	rules := []rule{
		{"relay/wire", nil, func(string) bool { return true }, "the wire types import nothing of ours", false},
		{"policy", nil, func(d string) bool { return d != "relay/wire" },
			"policy is pure: nothing of relay (but its wire types) or providers", false},
		{"policy", nil, func(d string) bool {
			return underAny(d, "net", "crypto/tls", "google.golang.org", "github.com/nats-io")
		}, "policy imports no network code", true},
		{"providers/appconfig", nil, func(d string) bool { return d != "relay/wire" },
			"the provider sections' YAML types link nothing of ours but the wire types", false},
		{"providers/appconfig", nil, func(d string) bool {
			return !std(d) && !underAny(d, "go.yaml.in/yaml/v3", "github.com/go-json-experiment/json") // the latter the wire types'
		}, "the provider sections' YAML types link only the standard library, yaml and the wire types", true},
		{"providers/appconfig", nil, func(d string) bool {
			return underAny(d, "net/http", "crypto/tls", "golang.org/x/net", "golang.org/x/oauth2", "google.golang.org",
				"github.com/sideshow", "github.com/nats-io")
		}, "the provider sections' YAML types import no network code (net/url parses, crypto/x509 checks a key)", true},
		{"providers/egress", nil, func(d string) bool { return d != "relay/wire" && underAny(d, "providers", "relay", "policy") },
			"the egress transport knows no provider", false},
		{"relay/spool", nil, func(d string) bool { return d != "relay/wire" }, "the spool stores, never sends", false},
		{"cmd/pushrelay", []string{"nodemo"}, func(d string) bool { return underAny(d, "providers/sandbox") },
			"production never links the look-alikes", false},
		{"relay", nil, func(d string) bool { return underAny(d, "providers/sandbox", "cmd") },
			"the pipeline links no look-alike and nothing of the command", false},
		{"relay", nil, func(d string) bool { return underAny(d, "providers/apns", "providers/fcm", "providers/upstream") },
			"the pipeline links no concrete provider (cmd/pushrelay/internal/wiring builds them)", false},
	}
	for _, p := range []string{"providers", "providers/apns", "providers/fcm", "providers/upstream", "providers/jsonobject"} {
		rules = append(rules, rule{p, nil, func(d string) bool {
			return underAny(d, "relay", "policy", "cmd", "providers/sandbox") && d != "relay/wire"
		},
			"providers know nothing of ingress, policy or the spool", false})
	}
	for _, r := range rules {
		for _, d := range deps(t, r.pkg, r.all, r.tags...) {
			if r.banned(d) {
				t.Errorf("%s links %s: %s", r.pkg, d, r.why)
			}
		}
	}
}

// TestRelayBuildsNoProvider: relay's production code never imports a
// concrete provider; cmd/pushrelay hands it a Providers function. The
// provider sections' YAML types (apps[].apns, .fcm, .upstream), their
// key-naming validation and their hosts come from providers/appconfig.
func TestRelayBuildsNoProvider(t *testing.T) {
	files, err := filepath.Glob("../../relay/*.go")
	if err != nil {
		t.Fatal(err)
	}
	concrete := []string{module + "providers/apns", module + "providers/fcm", module + "providers/upstream", module + "providers/sandbox"}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range file.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if slices.Contains(concrete, path) {
				t.Errorf("%s imports %s: the pipeline names no provider (cmd/pushrelay/internal/wiring builds them)", f, path)
			}
		}
	}
}
