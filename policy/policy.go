// Package policy strips post metadata from Mattermost notifications before
// they leave for Apple or Google. It is pure code: no network, no globals.
// The only road from a request to a provider goes through Policy.Apply.
//
// Imports: relay/wire only; no network code, nothing of relay or providers.
package policy

import (
	"fmt"
	"slices"

	"github.com/pushrelay/pushrelay/relay/wire"
)

// Mode is how much of a notification's content may leave.
type Mode string

// The modes, from most to least revealing.
const (
	// Full passes the notification through unchanged.
	Full Mode = "full"
	// Generic replaces the message text with the generic text and keeps
	// sender and channel names.
	Generic Mode = "generic"
	// GenericNoChannel is Generic without the channel name.
	GenericNoChannel Mode = "generic_no_channel"
	// IDOnly sends ids only, marked is_id_loaded, so the mobile app fetches
	// the content from the Mattermost server over its own connection.
	IDOnly Mode = "id_only"
)

// DefaultGenericText is what replaces a removed message, as Mattermost's own
// id-loaded pushes say.
const DefaultGenericText = "You've received a new message."

// removes is what each mode strips by itself.
var removes = map[Mode]FieldSet{
	Full:             0,
	Generic:          FieldSet(0).With(FieldMessage),
	GenericNoChannel: FieldSet(0).With(FieldMessage).With(FieldChannelName),
	IDOnly: FieldSet(0).With(FieldMessage).With(FieldChannelName).With(FieldSenderName).
		With(FieldOverrideUsername).With(FieldOverrideIconURL),
}

// Config is the `policy` section of the relay's configuration.
type Config struct {
	// Mode applies to notifications no rule matches. Default id_only.
	Mode Mode `yaml:"mode"`
	// Drop removes these fields on top of every mode, rules included.
	Drop []string `yaml:"drop"`
	// GenericText replaces a removed message. Default DefaultGenericText.
	GenericText string `yaml:"generic_text"`
	// Rules pick a mode (and extra drops) per notification; first match wins.
	Rules []Rule `yaml:"rules"`
}

// Rule chooses a mode for the notifications it matches. Every non-empty
// match list must contain the notification's value; a rule must have at
// least one.
type Rule struct {
	// Name identifies the rule in audit logs; default "rules[N]".
	Name      string   `yaml:"name"`
	ServerID  []string `yaml:"server_id"`
	Platform  []string `yaml:"platform"`
	Type      []string `yaml:"type"`
	TeamID    []string `yaml:"team_id"`
	ChannelID []string `yaml:"channel_id"`
	// Mode for matching notifications; default the top-level mode.
	Mode Mode `yaml:"mode"`
	// Drop removes these fields too, on top of the top-level drop.
	Drop []string `yaml:"drop"`
}

// Policy is a compiled, immutable policy, safe for concurrent use.
type Policy struct {
	def     choice
	rules   []compiledRule
	generic string
}

type choice struct {
	name string
	mode Mode
	drop FieldSet // everything removed: the mode's fields and the drops
}

type compiledRule struct {
	choice
	serverID, platform, typ, teamID, channelID []string
}

// Removed says what Apply did: which rule decided and which fields lost a
// value. It never holds the values themselves.
type Removed struct {
	Rule   string
	Mode   Mode
	Fields FieldSet
}

// Default returns the default policy: id_only, no rules.
func Default() *Policy {
	p, _ := New(Config{})
	return p
}

// New compiles cfg. Errors name the offending key, e.g. `policy.drop[1]:
// unknown field "foo"`.
func New(cfg Config) (*Policy, error) {
	p := &Policy{generic: cfg.GenericText}
	if p.generic == "" {
		p.generic = DefaultGenericText
	}
	if len(p.generic) > wire.MaxMessageBytes {
		return nil, fmt.Errorf("policy.generic_text: longer than %d bytes", wire.MaxMessageBytes)
	}
	mode := cfg.Mode
	if mode == "" {
		mode = IDOnly
	}
	if err := checkMode(mode, "policy.mode"); err != nil {
		return nil, err
	}
	global, err := parseDrop(cfg.Drop, "policy.drop")
	if err != nil {
		return nil, err
	}
	p.def = choice{name: "default", mode: mode, drop: removes[mode] | global}
	for i, r := range cfg.Rules {
		key := fmt.Sprintf("policy.rules[%d]", i)
		c := compiledRule{
			serverID: r.ServerID, platform: r.Platform, typ: r.Type,
			teamID: r.TeamID, channelID: r.ChannelID,
		}
		if len(r.ServerID)+len(r.Platform)+len(r.Type)+len(r.TeamID)+len(r.ChannelID) == 0 {
			return nil, fmt.Errorf("%s: matches nothing: set server_id, platform, type, team_id or channel_id (the top-level mode is the default)", key)
		}
		c.name = r.Name
		if c.name == "" {
			c.name = fmt.Sprintf("rules[%d]", i)
		}
		c.mode = r.Mode
		if c.mode == "" {
			c.mode = mode
		}
		if err := checkMode(c.mode, key+".mode"); err != nil {
			return nil, err
		}
		drop, err := parseDrop(r.Drop, key+".drop")
		if err != nil {
			return nil, err
		}
		c.drop = removes[c.mode] | global | drop
		p.rules = append(p.rules, c)
	}
	return p, nil
}

// Apply returns what may leave of n under the first rule that matches it
// (or the default), and what was removed. n is expected to be normalized
// (wire.Notification.Normalize). Apply never adds content: a removed field
// is left empty, except the message, which becomes the generic text.
func (p *Policy) Apply(n wire.Notification) (wire.Notification, Removed) {
	c := p.choose(&n)
	var removed FieldSet
	if c.drop.Has(FieldMessage) && n.Message != "" && n.Message != p.generic {
		n.Message = p.generic
		removed = removed.With(FieldMessage)
	}
	for f := FieldChannelName; f < numFields; f++ {
		if c.drop.Has(f) && clear(&n, f) {
			removed = removed.With(f)
		}
	}
	if c.mode == IDOnly && n.Type == wire.TypeMessage {
		// What Mattermost's own id-loaded pushes look like.
		n.IsIDLoaded = true
		n.Category = wire.CategoryCanReply
		n.Message = p.generic
	}
	return n, Removed{Rule: c.name, Mode: c.mode, Fields: removed}
}

func (p *Policy) choose(n *wire.Notification) *choice {
	for i := range p.rules {
		r := &p.rules[i]
		if matches(r.serverID, n.ServerID) && matches(r.platform, n.Platform) &&
			matches(r.typ, n.Type) && matches(r.teamID, n.TeamID) && matches(r.channelID, n.ChannelID) {
			return &r.choice
		}
	}
	return &p.def
}

func matches(list []string, v string) bool {
	return len(list) == 0 || slices.Contains(list, v)
}

func checkMode(m Mode, key string) error {
	if _, ok := removes[m]; !ok {
		return fmt.Errorf("%s: unknown mode %q (want full, generic, generic_no_channel or id_only)", key, m)
	}
	return nil
}

func parseDrop(names []string, key string) (FieldSet, error) {
	var s FieldSet
	for i, name := range names {
		f, ok := ParseField(name)
		if !ok {
			if slices.Contains(alwaysPass, name) {
				return 0, fmt.Errorf("%s[%d]: %s always passes and cannot be dropped", key, i, name)
			}
			return 0, fmt.Errorf("%s[%d]: unknown field %q", key, i, name)
		}
		s = s.With(f)
	}
	return s, nil
}
