package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/relay"
)

// readmeBlocks returns the README's fenced code blocks of one language.
func readmeBlocks(t *testing.T, lang string) []string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(string(data), -1) {
		out = append(out, m[1])
	}
	return out
}

// TestReadmeCommands runs every pushrelay command line of the README's
// shell blocks through the real argument parsing (with --help appended, so
// that nothing is served, sent or written): each flag and argument it
// shows must be one the command takes. The README's first two commands
// (the demo and the tests) run in CI as they are.
func TestReadmeCommands(t *testing.T) {
	prefix := regexp.MustCompile(`^(?:\./pushrelay|pushrelay|go run \./cmd/pushrelay)\s+`)
	n := 0
	for _, block := range readmeBlocks(t, "sh") {
		for _, line := range strings.Split(strings.ReplaceAll(block, "\\\n", " "), "\n") {
			line, _, _ = strings.Cut(line, " #")
			line = strings.TrimSpace(line)
			loc := prefix.FindStringIndex(line)
			if loc == nil {
				continue
			}
			line, _, _ = strings.Cut(line[loc[1]:], " >")                        // redirections
			line = regexp.MustCompile(`\$\([^)]*\)`).ReplaceAllString(line, "1") // $(pidof pushrelay)
			args := strings.Fields(line)
			n++
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var out, errOut bytes.Buffer
				code := run(context.Background(), append(args, "--help"), &out, &errOut)
				if code != 0 || strings.Contains(errOut.String(), "not defined") {
					t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
				}
				max := map[string]int{"check": 1, "serve": 1, "migrate": 1, "policy": 2}[args[0]] // policy explain FILE.json
				if got := positional(args[1:]); args[0] != "bench" && got > max {                 // bench's flags take values
					t.Errorf("%d arguments, %s takes %d", got, args[0], max)
				}
			})
		}
	}
	if n < 8 {
		t.Errorf("found %d pushrelay commands in the README; the extraction is broken", n)
	}
}

// positional counts the arguments that are not flags or flag values.
func positional(args []string) int {
	n := 0
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--config" || a == "-config":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			n++
		}
	}
	return n
}

// TestReadmeConfigurations: every YAML block of the README that is a whole
// configuration (it has apps:) is one the relay accepts.
func TestReadmeConfigurations(t *testing.T) {
	n := 0
	for _, block := range readmeBlocks(t, "yaml") {
		if !strings.Contains(block, "\napps:") && !strings.HasPrefix(block, "apps:") {
			continue
		}
		n++
		if _, err := relay.ParseConfig([]byte(block), nil); err != nil {
			t.Errorf("%v\n%s", err, block)
		}
	}
	if n == 0 {
		t.Error("no configuration found in the README")
	}
}
