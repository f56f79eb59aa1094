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
// production code of pkg links (tests left out), and all of them when std
// is set (the standard library's too).
func deps(t *testing.T, pkg string, std bool, tags ...string) []string {
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
		case std && !strings.Contains(strings.Split(p, "/")[0], "."):
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
	rules := []struct {
		pkg    string
		tags   []string
		banned func(dep string) bool
		why    string
	}{
		{"relay/wire", nil, func(string) bool { return true }, "the wire types import nothing of ours"},
		{"policy", nil, func(d string) bool { return d != "relay/wire" },
			"policy is pure: nothing of relay (but its wire types) or providers"},
		{"policy", nil, func(d string) bool {
			return underAny(d, "net", "crypto/tls", "google.golang.org", "github.com/nats-io")
		}, "policy imports no network code"}, // the one rule on the standard library too
		{"providers/egress", nil, func(d string) bool { return d != "relay/wire" && underAny(d, "providers", "relay", "policy") },
			"the egress transport knows no provider"},
		{"relay/spool", nil, func(d string) bool { return d != "relay/wire" }, "the spool stores, never sends"},
		{"cmd/pushrelay", []string{"nodemo"}, func(d string) bool { return underAny(d, "providers/sandbox") },
			"production never links the look-alikes"},
		{"relay", nil, func(d string) bool { return underAny(d, "providers/sandbox", "cmd") },
			"the pipeline links no look-alike and nothing of the command"},
	}
	for _, p := range []string{"providers", "providers/apns", "providers/fcm", "providers/upstream", "providers/jsonobject"} {
		rules = append(rules, struct {
			pkg    string
			tags   []string
			banned func(dep string) bool
			why    string
		}{p, nil, func(d string) bool {
			return underAny(d, "relay", "policy", "cmd", "providers/sandbox") && d != "relay/wire"
		},
			"providers know nothing of ingress, policy or the spool"})
	}
	for _, r := range rules {
		network := strings.HasSuffix(r.why, "no network code")
		for _, d := range deps(t, r.pkg, network, r.tags...) {
			if r.banned(d) {
				t.Errorf("%s links %s: %s", r.pkg, d, r.why)
			}
		}
	}
}

// TestRelayBuildsNoProvider: relay's production code never imports a
// concrete provider to build it; cmd/pushrelay hands it a Providers
// function. config.go alone names them, for their YAML types (apps[].apns,
// .fcm, .upstream), whose strict decoding and key-naming validation live
// with each provider.
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
			if !slices.Contains(concrete, path) {
				continue
			}
			if filepath.Base(f) != "config.go" || strings.HasSuffix(path, "/sandbox") {
				t.Errorf("%s imports %s: the pipeline names no provider (cmd/pushrelay/internal/wiring builds them)", f, path)
			}
		}
	}
}
