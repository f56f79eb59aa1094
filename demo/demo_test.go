package demo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/demo"
)

func TestRunShowsEveryStep(t *testing.T) {
	var out bytes.Buffer
	if err := demo.Run(context.Background(), &out, demo.Options{}); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	text := out.String()
	if got := strings.Count(text, "relay answered OK"); got != 6 {
		t.Errorf("%d steps answered OK, want 6:\n%s", got, text)
	}
	for _, want := range []string{
		"relay answered REMOVE",
		"later the spool delivered it",
		`pushrelay_notifications_total{app="apple_rn",outcome="spooled",provider="apns",type="message"} 1`,
		"reached Apple: POST /3/device/<token>",
		"reached Google: FCM v1 messages:send",
		"the policy removed: message, channel_name, sender_name",
		`pushrelay_notifications_total{app="apple_rn",outcome="removed",provider="apns",type="message"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Under the default policy the message text appears once per step, on
	// the Mattermost side only.
	for _, secret := range []string{"margins up 4%", "acquisition NDA", "approved the layoffs", "auditors arrive"} {
		for _, line := range strings.Split(text, "\n") {
			if i := strings.Index(line, "│"); i >= 0 && strings.Contains(line[i:], secret) {
				t.Errorf("%q reached Apple or Google: %s", secret, line)
			}
		}
	}
}

func ExampleRun() {
	var out bytes.Buffer
	err := demo.Run(context.Background(), &out, demo.Options{})
	println(err == nil) // output varies by port, so it is not checked
}
