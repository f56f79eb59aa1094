// Package demo runs pushrelay end to end with no configuration and no
// credentials: the real relay on loopback, in-process look-alikes of APNs
// and FCM, and a set of notifications shaped like the Mattermost server's.
// It prints, side by side, what Mattermost sent and what reached Apple or
// Google under the default policy.
//
// It belongs to the command (pushrelay demo) and may import relay, policy,
// the providers and providers/sandbox; nothing but cmd/pushrelay imports it,
// and the nodemo build leaves it out.
package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/wiring"
	"github.com/pushrelay/pushrelay/policy"
	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/providers/sandbox"
	"github.com/pushrelay/pushrelay/relay"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// Options tune a demo run.
type Options struct {
	// Keep leaves the relay and the look-alikes serving after the demo,
	// until ctx ends.
	Keep bool
	// Width is the terminal's width in columns; 0 (or less than 80) means
	// 80, which also reads well piped into a file or a pager. From 120
	// columns, what Mattermost sent and what left are shown side by side;
	// below, one after the other.
	Width int
}

// minWidth is the narrowest report; sideBySideWidth the narrowest shown
// in two columns.
const (
	minWidth        = 80
	sideBySideWidth = 120
)

// step is one notification the demo sends, as the Mattermost server would.
type step struct {
	title string
	n     wire.Notification
	setup func(apple *sandbox.APNs, google *sandbox.FCM)
	// after runs once the relay has answered; the demo then waits for the
	// notification to reach Apple or Google (a redelivery from the spool).
	after func(apple *sandbox.APNs, google *sandbox.FCM)
}

const (
	iosToken     = "6f1c4e9a0b7d2e3f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f"
	androidToken = "fcm-demo-token-eXampleAndroid0123456789"
	deadToken    = "0badc0ffee0badc0ffee0badc0ffee0badc0ffee0badc0ffee0badc0ffee0bad"
)

func steps() []step {
	msg := wire.Notification{
		AckID: "ack-1", Platform: "apple_rn-v2", ServerID: "mm-prod-1", DeviceID: iosToken,
		PostID: "p0st1d", Category: wire.CategoryCanReply, Message: "alice: Q3 numbers are in, margins up 4% :tada:",
		Badge: 2, TeamID: "team-sales", ChannelID: "ch-town", ChannelName: "Board Room", Type: wire.TypeMessage,
		SenderID: "u-alice", SenderName: "alice", Version: "v2", Signature: "eyJhbGciOiJFUzI1NiJ9.demo.sig",
	}
	dm := msg
	dm.AckID, dm.Platform, dm.DeviceID, dm.ChannelID = "ack-2", "android_rn", androidToken, "ch-dm-bob-carol"
	dm.ChannelName, dm.Message, dm.SenderID, dm.SenderName = "", "carol: can you sign the acquisition NDA tonight?", "u-carol", "carol"
	reply := msg
	reply.AckID, reply.RootID, reply.IsCRTEnabled = "ack-3", "p-root", true
	reply.Message = "bob replied: the board approved the layoffs"
	idLoaded := dm
	idLoaded.AckID, idLoaded.IsIDLoaded, idLoaded.Message, idLoaded.SenderName = "ack-4", true, "You've received a new message.", ""
	clear := wire.Notification{
		AckID: "ack-5", Platform: "apple_rn-v2", ServerID: "mm-prod-1", DeviceID: iosToken, Type: wire.TypeClear,
		ChannelID: "ch-town", TeamID: "team-sales", Signature: "eyJhbGciOiJFUzI1NiJ9.demo.sig",
	}
	dead := msg
	dead.AckID, dead.DeviceID = "ack-6", deadToken
	outage := msg
	outage.AckID, outage.Message = "ack-7", "alice: the auditors arrive monday"
	return []step{
		{title: "Channel message (iOS)", n: msg},
		{title: "Direct message (Android)", n: dm},
		{title: "Thread reply with collapsed threads (iOS)", n: reply},
		{title: "ID-only push from the server (Android)", n: idLoaded},
		{title: "Clear: the user read the channel (iOS)", n: clear},
		{title: "Uninstalled app: Apple says the token is dead (iOS)", n: dead,
			setup: func(apple *sandbox.APNs, _ *sandbox.FCM) { apple.KillToken(deadToken, "Unregistered") }},
		{title: "Apple is down (503): the spool rides the outage out (iOS)", n: outage,
			setup: func(apple *sandbox.APNs, _ *sandbox.FCM) { apple.Fail(sandbox.Fault{Status: 503}) },
			after: func(apple *sandbox.APNs, _ *sandbox.FCM) {
				time.Sleep(500 * time.Millisecond)
				apple.Recover()
			}},
	}
}

// Run runs the demo, writing its report to out.
func Run(ctx context.Context, out io.Writer, opt Options) error {
	apple, google := sandbox.NewAPNs(), sandbox.NewFCM()
	defer apple.Close()
	defer google.Close()
	dir, err := os.MkdirTemp("", "pushrelay-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)
	creds, err := sandbox.WriteCredentials(dir, apple, google)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	cfg := relay.Defaults()
	cfg.Listen, cfg.Metrics.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Egress.CAFile = creds.CAFile
	cfg.Spool.Dir = filepath.Join(dir, "spool")
	cfg.Delivery.Backoff.Initial, cfg.Delivery.Backoff.Max = 200*time.Millisecond, time.Second
	cfg.Apps = []relay.AppConfig{
		{Platform: "apple_rn", APNs: &apns.Config{Topic: "com.mattermost.rn", AuthKeyFile: creds.APNsKeyFile,
			KeyID: creds.KeyID, TeamID: creds.TeamID, Endpoint: apple.URL()}},
		{Platform: "android_rn", FCM: &fcm.Config{ServiceAccountFile: creds.ServiceAccountFile, Endpoint: google.URL()}},
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := relay.NewServer(&cfg, wiring.Providers, logger)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(stop)
	}()

	p := &printer{w: out, width: max(opt.Width, minWidth)}
	p.line(fmt.Sprintf("pushrelay demo: relay on %s, look-alike APNs on %s, FCM on %s", srv.Addr(), apple.URL(), google.URL()))
	p.line(fmt.Sprintf("policy: %s (the default): message text, channel and sender names never leave.", cfg.Policy.Mode))
	p.line("What the phone shows then: the app fetches the content from your Mattermost server over its own " +
		"connection, which works only when that server has a Professional or Enterprise license and the phone " +
		"can reach it (VPN); otherwise it shows \"You've received a new message.\" (sender \"Someone\" on Android). " +
		"See \"What the phone shows\" in the README.")
	p.line("")

	pol, err := policy.New(cfg.Policy)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for i, s := range steps() {
		if s.setup != nil {
			s.setup(apple, google)
		}
		na, nf := len(apple.Requests()), len(google.Requests())
		answer, err := post(ctx, client, "http://"+srv.Addr()+"/api/v1/send_push", s.n)
		if err != nil {
			return fmt.Errorf("demo step %d: %w", i+1, err)
		}
		if s.after != nil {
			s.after(apple, google)
			answer += fmt.Sprintf(" at once; %d failed attempt(s) later the spool delivered it", waitDelivered(apple, google, na, nf))
		}
		var upstream, where string
		if reqs := apple.Requests(); len(reqs) > na {
			r := reqs[len(reqs)-1]
			where = "reached Apple: POST /3/device/<token>"
			upstream = apnsView(r)
		} else if reqs := google.Requests(); len(reqs) > nf {
			where = "reached Google: FCM v1 messages:send"
			upstream = indent(reqs[len(reqs)-1].Body)
		} else {
			where, upstream = "reached nobody", ""
		}
		sent, _ := json.Marshal(s.n)
		p.line(fmt.Sprintf("── %d. %s", i+1, s.title))
		p.line("   relay answered " + answer)
		if removed := removedBy(pol, s.n); removed != "" {
			p.line("   the policy removed: " + removed)
		}
		p.compare("Mattermost sent", indent(sent), where, upstream)
		p.line("")
	}

	p.line("── metrics (from the relay's /metrics) ──")
	if err := summary(ctx, client, "http://"+srv.MetricsAddr()+"/metrics", p); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if opt.Keep {
		p.line("")
		p.line(fmt.Sprintf("still serving (Ctrl-C to stop): send_push at http://%s/api/v1/send_push, metrics at http://%s/metrics", srv.Addr(), srv.MetricsAddr()))
		<-ctx.Done()
	}
	return nil
}

// waitDelivered waits (up to 15 s) for a request answered 200 after the
// first na/nf requests, and returns how many failed before it.
func waitDelivered(apple *sandbox.APNs, google *sandbox.FCM, na, nf int) int {
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		failed := 0
		for _, r := range apple.Requests()[na:] {
			if r.Status == http.StatusOK {
				return failed
			}
			failed++
		}
		for _, r := range google.Requests()[nf:] {
			if r.Status == http.StatusOK {
				return failed
			}
			failed++
		}
	}
	return -1
}

// post sends n as the Mattermost server does: JSON body, no Content-Type.
func post(ctx context.Context, c *http.Client, url string, n wire.Notification) (string, error) {
	body, err := json.Marshal(n)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("User-Agent", "Mattermost-Bot/1.1")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var r wire.Response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", fmt.Errorf("HTTP %d, undecodable answer: %w", resp.StatusCode, err)
	}
	if r.Error != "" {
		return fmt.Sprintf("%s (%s)", r.Status, r.Error), nil
	}
	return r.Status, nil
}

// removedBy names the fields pol strips from n, as the relay does.
func removedBy(pol *policy.Policy, n wire.Notification) string {
	if err := n.Normalize(); err != nil {
		return ""
	}
	_, removed := pol.Apply(n)
	return strings.ReplaceAll(removed.Fields.String(), ",", ", ")
}

func apnsView(r sandbox.APNsRequest) string {
	var b strings.Builder
	for _, h := range []string{"apns-topic", "apns-push-type", "apns-priority", "apns-expiration", "apns-collapse-id"} {
		if r.Header.Get(h) == "" {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\n", h, r.Header.Get(h))
	}
	b.WriteString(indent(r.Body))
	return b.String()
}

func indent(raw []byte) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	out, _ := json.MarshalIndent(v, "", "  ")
	return string(out)
}

// printer writes the report, no line wider than width columns.
type printer struct {
	w     io.Writer
	width int
}

// line writes s, wrapped at width (see wrap).
func (p *printer) line(s string) {
	for _, l := range wrap(s, p.width) {
		fmt.Fprintln(p.w, l)
	}
}

// compare shows what Mattermost sent and what left: side by side when the
// terminal is wide enough, else one after the other.
func (p *printer) compare(leftTitle, left, rightTitle, right string) {
	if p.width < sideBySideWidth {
		p.line(leftTitle + ":")
		for _, l := range strings.Split(strings.TrimRight(left, "\n"), "\n") {
			p.line("  " + l)
		}
		p.line(rightTitle + ":")
		if right != "" {
			for _, l := range strings.Split(strings.TrimRight(right, "\n"), "\n") {
				p.line("  " + l)
			}
		}
		return
	}
	column := min((p.width-3)/2, 62)
	var l, r []string
	for _, s := range strings.Split(strings.TrimRight(left, "\n"), "\n") {
		l = append(l, wrap(s, column)...)
	}
	for _, s := range strings.Split(strings.TrimRight(right, "\n"), "\n") {
		r = append(r, wrap(s, column)...)
	}
	fmt.Fprintf(p.w, "%s%s │ %s\n", leftTitle, pad(leftTitle, column), rightTitle)
	fmt.Fprintf(p.w, "%s─┼─%s\n", strings.Repeat("─", column), strings.Repeat("─", column))
	for i := 0; i < max(len(l), len(r)); i++ {
		var a, b string
		if i < len(l) {
			a = l[i]
		}
		if i < len(r) {
			b = r[i]
		}
		fmt.Fprintf(p.w, "%s%s │ %s\n", a, pad(a, column), b)
	}
}

func pad(s string, column int) string {
	return strings.Repeat(" ", max(0, column-utf8.RuneCountInString(s)))
}

// wrap breaks line into lines of at most width runes, at spaces where it
// can (a word longer than a line is cut); continuation lines are indented
// four more than the line's own indentation.
func wrap(line string, width int) []string {
	rs := []rune(strings.TrimRight(line, " "))
	if len(rs) <= width {
		return []string{string(rs)}
	}
	lead := 0
	for lead < len(rs) && rs[lead] == ' ' {
		lead++
	}
	cont := []rune(strings.Repeat(" ", min(lead+4, width/2)))
	var out []string
	for len(rs) > width {
		cut := width
		for i := width; i > len(cont)+1 && i > lead; i-- {
			if rs[i] == ' ' {
				cut = i
				break
			}
			if rs[i-1] == ',' && cut == width {
				cut = -i // a comma: the place to cut when there is no space
			}
		}
		if cut < 0 {
			cut = -cut
		}
		out = append(out, strings.TrimRight(string(rs[:cut]), " "))
		rest := rs[cut:]
		for len(rest) > 0 && rest[0] == ' ' {
			rest = rest[1:]
		}
		rs = append(append([]rune{}, cont...), rest...)
	}
	return append(out, string(rs))
}

// summary prints the non-zero notification and policy counters.
func summary(ctx context.Context, c *http.Client, url string, p *printer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var counts [][5]string // app, provider, type, outcome, count
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasSuffix(line, " 0") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "pushrelay_notifications_total{"); ok {
			labels, value, _ := strings.Cut(rest, "} ")
			l := map[string]string{}
			for _, m := range labelRE.FindAllStringSubmatch(labels, -1) {
				l[m[1]] = m[2]
			}
			counts = append(counts, [5]string{l["app"], l["provider"], l["type"], l["outcome"], value})
			continue
		}
		if strings.HasPrefix(line, "pushrelay_policy_fields_removed_total{") || strings.HasPrefix(line, "pushrelay_provider_errors_total{") ||
			strings.HasPrefix(line, "pushrelay_spool_") {
			lines = append(lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	sort.Slice(counts, func(i, j int) bool { return strings.Join(counts[i][:4], " ") < strings.Join(counts[j][:4], " ") })
	p.line("  pushrelay_notifications_total, by outcome:")
	rows := append([][5]string{{"app", "provider", "type", "outcome", "count"}}, counts...)
	var widths [5]int
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, r := range rows {
		p.line(fmt.Sprintf("    %-*s  %-*s  %-*s  %-*s  %*s", widths[0], r[0], widths[1], r[1], widths[2], r[2], widths[3], r[3], widths[4], r[4]))
	}
	sort.Strings(lines)
	for _, l := range lines {
		p.line("  " + l)
	}
	return nil
}

var labelRE = regexp.MustCompile(`(\w+)="([^"]*)"`)
