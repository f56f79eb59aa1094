package explain

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/pushrelay/pushrelay/policy"
	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/providers/fcm"
	"github.com/pushrelay/pushrelay/providers/upstream"
	"github.com/pushrelay/pushrelay/relay"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// Explain writes which app n goes to (by its platform, as the relay routes
// it), then, for every app in cfg, what would leave for its provider if n
// arrived for that app: the rule that decides, the fields the policy
// removes, and the upstream request field by field. It reads no credential
// and opens no connection; the payloads come from the same builders the
// providers send with.
func Explain(cfg *relay.Config, n wire.Notification, w io.Writer) error {
	pol, err := policy.New(cfg.Policy)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, routeOf(cfg, n.Platform))
	fmt.Fprintln(w)
	for _, a := range cfg.Apps {
		in := n
		if a.Platform != "*" {
			_, v := wire.SplitPlatform(in.Platform)
			in.Platform = a.Platform
			if v > 1 {
				in.Platform += "-v" + strconv.Itoa(v)
			}
		}
		if err := in.Normalize(); err != nil {
			fmt.Fprintf(w, "app %s: refused: %v\n\n", a.Platform, err)
			continue
		}
		out, removed := pol.Apply(in)
		var provider string
		var fields [][2]string
		switch {
		case a.APNs != nil:
			an := apns.Build(&out, a.APNs.Topic)
			provider = "apns " + a.APNs.Host()
			fields = append(fields, [2]string{"header apns-topic", an.Topic}, [2]string{"header apns-push-type", string(an.PushType)},
				[2]string{"header apns-priority", strconv.Itoa(an.Priority)})
			if an.CollapseID != "" {
				fields = append(fields, [2]string{"header apns-collapse-id", an.CollapseID})
			}
			fields = append(fields, [2]string{"path", "/3/device/<device_id>"})
			body, err := json.Marshal(an.Payload)
			if err != nil {
				return fmt.Errorf("app %s: %w", a.Platform, err)
			}
			fields = append(fields, flatten(body)...)
		case a.FCM != nil:
			provider = "fcm"
			body, err := json.Marshal(map[string]any{"message": fcm.Build(&out)})
			if err != nil {
				return fmt.Errorf("app %s: %w", a.Platform, err)
			}
			fields = flatten(body)
		case a.Upstream != nil:
			provider = "upstream " + a.Upstream.URL
			body, err := json.Marshal(upstream.Build(&out))
			if err != nil {
				return fmt.Errorf("app %s: %w", a.Platform, err)
			}
			fields = flatten(body)
		}
		fmt.Fprintf(w, "app %s -> %s: rule %s (mode %s)\n", a.Platform, provider, removed.Rule, removed.Mode)
		if removed.Fields == 0 {
			fmt.Fprintln(w, "  removed: nothing")
		} else {
			fmt.Fprintf(w, "  removed: %s\n", strings.ReplaceAll(removed.Fields.String(), ",", ", "))
		}
		width := 0
		for _, f := range fields {
			width = max(width, len(f[0]))
		}
		for _, f := range fields {
			fmt.Fprintf(w, "  %-*s  %s\n", width, f[0], f[1])
		}
		fmt.Fprintln(w)
	}
	return nil
}

// routeOf says which app the relay sends a notification for platform to,
// as Relay.Push routes it: the platform without its -vN suffix, else "*".
func routeOf(cfg *relay.Config, platform string) string {
	if platform == "" {
		return "this notification has no platform: the relay answers FAIL (below, what each app would send if it had its platform)"
	}
	name, _ := wire.SplitPlatform(platform)
	var wildcard *relay.AppConfig
	for i, a := range cfg.Apps {
		if a.Platform == name {
			return fmt.Sprintf("platform %q goes to app %s (apps[%d], %s)", platform, a.Platform, i, providerOf(a))
		}
		if a.Platform == "*" {
			wildcard = &cfg.Apps[i]
		}
	}
	if wildcard != nil {
		return fmt.Sprintf("platform %q goes to app * (no app is named %s; %s)", platform, name, providerOf(*wildcard))
	}
	return fmt.Sprintf("platform %q goes to no app: none is named %s and there is no \"*\", so the relay answers FAIL "+
		"(below, what each app would send if it were its platform)", platform, name)
}

func providerOf(a relay.AppConfig) string {
	switch {
	case a.APNs != nil:
		return "apns " + a.APNs.Host()
	case a.FCM != nil:
		return "fcm"
	case a.Upstream != nil:
		return "upstream " + a.Upstream.URL
	}
	return "no provider"
}

// flatten lists a JSON document's leaves as dotted paths with JSON values,
// sorted by path.
func flatten(doc []byte) [][2]string {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return [][2]string{{"body", string(doc)}}
	}
	var out [][2]string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, child := range m {
				if path != "" {
					k = path + "." + k
				}
				walk(k, child)
			}
			return
		}
		b, _ := json.Marshal(v)
		out = append(out, [2]string{path, string(b)})
	}
	walk("", v)
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}
