package demo

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pushrelay/pushrelay/policy"
	"github.com/pushrelay/pushrelay/relay"
)

var update = flag.Bool("update", false, "rewrite testdata/demo-80.golden")

// varying are the parts of the report that change from run to run: ports,
// deadlines, and how many attempts the outage step took.
var varying = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
	{regexp.MustCompile(`apns-expiration: \d+`), "apns-expiration: TIME"},
	{regexp.MustCompile(`"ttl": "\d+s"`), `"ttl": "TTLs"`},
	{regexp.MustCompile(`\d+ failed attempt\(s\)`), "N failed attempt(s)"},
	{regexp.MustCompile(`(reason="ServiceUnavailable"\}|redeliveries_total) \d+`), "$1 N"},
}

// TestRunAt80Columns holds the whole report at 80 columns to a golden file
// (what varies from run to run masked): no line is wider than 80, every
// step is there, and what reached Apple and Google holds no message text.
func TestRunAt80Columns(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), &out, Options{Width: 80}); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	text := out.String()
	for i, line := range strings.Split(text, "\n") {
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("line %d is %d columns wide: %s", i+1, n, line)
		}
	}
	masked := text
	for _, v := range varying {
		masked = v.re.ReplaceAllString(masked, v.with)
	}
	const golden = "testdata/demo-80.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(masked), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/pushrelay/internal/demo -run TestRunAt80Columns -update writes it)", err)
	}
	if masked != string(want) {
		t.Errorf("the report differs from %s (rerun with -update if the change is intended):\n%s", golden, masked)
	}

	if got := strings.Count(text, "relay answered OK"); got != 6 {
		t.Errorf("%d steps answered OK, want 6", got)
	}
	for _, want := range []string{
		"relay answered REMOVE",
		"later the spool delivered it",
		"reached Apple: POST /3/device/<token>",
		"reached Google: FCM v1 messages:send",
		"Professional or Enterprise license",
		"apple_rn    apns      message  spooled        1",
		"apple_rn    apns      message  removed        1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	checkPolicy(t, text)
}

// checkPolicy holds each step's "the policy removed" line to what
// policy.Apply, with the relay's default policy, removes from that step's
// notification, and checks that no removed value reached Apple or Google.
func checkPolicy(t *testing.T, text string) {
	t.Helper()
	pol, err := policy.New(relay.Defaults().Policy)
	if err != nil {
		t.Fatal(err)
	}
	sections := strings.Split(text, "\n── ")
	for i, s := range steps() {
		var section string
		for _, sec := range sections {
			if strings.HasPrefix(sec, fmt.Sprintf("%d. ", i+1)) {
				section = sec
			}
		}
		if section == "" {
			t.Errorf("step %d (%s) is missing", i+1, s.title)
			continue
		}
		n := s.n
		if err := n.Normalize(); err != nil {
			t.Fatal(err)
		}
		_, removed := pol.Apply(n)
		want := strings.ReplaceAll(removed.Fields.String(), ",", ", ")
		if want != "" && !strings.Contains(section, "the policy removed: "+want+"\n") {
			t.Errorf("step %d: the report does not say the policy removed %q:\n%s", i+1, want, section)
		}
		if want == "" && strings.Contains(section, "the policy removed") {
			t.Errorf("step %d: the report says the policy removed something; policy.Apply removes nothing", i+1)
		}
		_, left, _ := strings.Cut(section, "\nreached ")
		for _, v := range []string{s.n.Message, s.n.ChannelName, s.n.SenderName} {
			if v != "" && v != relay.Defaults().Policy.GenericText && v != "You've received a new message." && strings.Contains(left, `"`+v+`"`) {
				t.Errorf("step %d: %q reached Apple or Google", i+1, v)
			}
		}
	}
}

// ExampleRun runs the whole demo in-process and counts its answers.
func ExampleRun() {
	var out bytes.Buffer
	if err := Run(context.Background(), &out, Options{}); err != nil {
		fmt.Println(err)
	}
	fmt.Println(strings.Count(out.String(), "relay answered OK"), "answered OK,",
		strings.Count(out.String(), "relay answered REMOVE"), "answered REMOVE")
	// Output: 6 answered OK, 1 answered REMOVE
}
