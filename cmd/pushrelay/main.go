// Command pushrelay is a push-notification relay for Mattermost: a drop-in
// for Mattermost's push proxy that strips post metadata by policy and
// forwards to APNs and FCM from a DMZ.
//
// Usage:
//
//	pushrelay serve [--config FILE]   run the relay
//	pushrelay demo [--keep]           run it against in-process look-alikes of APNs and FCM
//	pushrelay check [--config FILE] [--egress]  validate a configuration (and reach the push hosts)
//	pushrelay policy explain [--config FILE] [FILE.json]
//	                                  show what each app would send upstream for a notification
//	pushrelay migrate FILE.json       print mattermost-push-proxy's config.json as pushrelay YAML
//	pushrelay bench [--sandbox]       load a relay and measure it
//	pushrelay version                 print the version
//
// Every subcommand takes --help.
//
// Layout: this package parses the subcommands and wires the parts: it builds the
// providers (internal/wiring) and hands them to relay, and calls the packages
// under internal/ for what only the command does (demo, bench, migrate,
// policy explain, check --egress). Built with -tags nodemo it links no
// look-alike (providers/sandbox).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/egresscheck"
	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/explain"
	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/heapfloor"
	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/migrate"
	"github.com/pushrelay/pushrelay/cmd/pushrelay/internal/wiring"
	"github.com/pushrelay/pushrelay/policy"
	"github.com/pushrelay/pushrelay/relay"
	"github.com/pushrelay/pushrelay/relay/wire"
)

const usage = `pushrelay: a Mattermost push-notification relay for the DMZ.

Usage:
  pushrelay serve [--config FILE]   run the relay
  pushrelay demo [--keep]           run the relay against in-process APNs/FCM look-alikes and show what leaves
  pushrelay check [--config FILE] [--egress]
                                    validate a configuration and load its credentials; with --egress, reach
                                    every host the apps use through the egress path and print what to open
  pushrelay policy explain [--config FILE] [FILE.json]
                                    for a notification (FILE.json or stdin), show field by field what each
                                    configured app would send upstream and what the policy removed
  pushrelay migrate FILE.json       print mattermost-push-proxy's config.json as pushrelay YAML (serve, check
                                    and policy explain also take that file as --config directly)
  pushrelay bench [--sandbox | -url URL] [-c N] [-n N | -d DURATION]
                                    load a relay with Mattermost-shaped pushes; --sandbox measures this machine
  pushrelay version                 print the version

FILE defaults to $PUSHRELAY_CONFIG, else pushrelay.yaml; check and serve also take it as their one
argument (pushrelay check my.yaml). "pushrelay COMMAND --help" describes a command.
`

// The usage of each subcommand, for --help; the flags follow.
const (
	serveUsage = `Usage: pushrelay serve [--config FILE]
       pushrelay serve FILE

Runs the relay: the send_push API on listen, /metrics on metrics.listen. SIGHUP reloads the policy,
credentials, secrets and certificates without dropping requests (a bad configuration is refused and the
running one stays); SIGTERM finishes or spools the sends in flight and exits.
`
	demoUsage = `Usage: pushrelay demo [--keep]

Starts the relay on loopback against in-process look-alikes of APNs and FCM (no configuration, no
credentials, nothing but loopback), sends the notifications a Mattermost server sends, and shows what
Mattermost sent next to what reached Apple or Google under the default policy, then the relay's counts.
The report fits the terminal's width ($COLUMNS, at least 80 columns; 80 when piped).
`
	checkUsage = `Usage: pushrelay check [--config FILE] [--egress]
       pushrelay check [--egress] FILE

Validates the configuration FILE (pushrelay YAML, or mattermost-push-proxy's config.json) and loads every
credential, secret and certificate it names, as serve would, without opening a port. Every problem is
listed at once, in the order of the file, each with its key. With --egress it then reaches every host the
apps use, through the configured proxy and source address, and prints what works and what the network
team must open. Exits 1 if anything is wrong.
`
	explainUsage = `Usage: pushrelay policy explain [--config FILE] [FILE.json]

Reads one notification as the Mattermost server sends it (the JSON body of /api/v1/send_push) from
FILE.json, or from stdin when it is piped in, and prints which app it goes to and, for every configured
app, what the policy removes and what would be sent to Apple, Google or the upstream push proxy, field by
field. It reads no credential and sends nothing.
`
	migrateUsage = `Usage: pushrelay migrate FILE.json > pushrelay.yaml

Reads FILE.json, mattermost-push-proxy's config.json, and prints the equivalent pushrelay YAML on stdout,
with a comment wherever the two differ; what each old key became goes to stderr. An entry the old file
leaves without a credential (as its shipped sample does) is written with the key empty and marked FILL.
Relative paths of the old file are made absolute against the old proxy's directory. Exits 1 only when
FILE.json cannot be read. Then: pushrelay check --config pushrelay.yaml
`
	versionUsage = `Usage: pushrelay version

Prints the version: the module version it was built as, or the commit and its time ("+dirty" when built
from a modified tree).
`
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if code, ok := serveLookalikes(ctx); ok {
		// Started by `bench --sandbox` to serve its look-alikes.
		os.Exit(code)
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		relay.Version, relay.Commit = buildVersion(relay.Version, relay.Commit, info)
	}
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// buildVersion names the build: the version and commit stamped in with
// -ldflags -X when they were, else what Go recorded: the module version
// (go install ...@v1.2.3), or the VCS revision and its time, "+dirty" when
// the tree had changes (go build in a checkout).
func buildVersion(version, commit string, info *debug.BuildInfo) (string, string) {
	if version != "dev" {
		return version, commit
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	rev := settings["vcs.revision"]
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && settings["vcs.modified"] == "true" {
		rev += "+dirty"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		if rev == "" {
			return v, commit
		}
		return v, rev
	}
	if rev == "" {
		return version, commit
	}
	if t := settings["vcs.time"]; t != "" {
		return "devel-" + rev, rev + " " + t
	}
	return "devel-" + rev, rev
}

// run executes one subcommand and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "demo":
		err = runDemo(ctx, args[1:], stdout)
	case "check":
		err = check(args[1:], stdout)
	case "policy":
		if len(args) >= 2 && (args[1] == "--help" || args[1] == "-h" || args[1] == "help") {
			fmt.Fprint(stdout, explainUsage)
			return 0
		}
		if len(args) < 2 || args[1] != "explain" {
			fmt.Fprintln(stderr, "pushrelay policy: the only subcommand is explain (pushrelay policy explain --help)")
			return 2
		}
		args = append([]string{"policy explain"}, args[2:]...)
		err = explainCmd(args[1:], os.Stdin, stdout)
	case "migrate":
		err = migrateCmd(args[1:], stdout, stderr)
	case "bench":
		err = runBench(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		if err = parseFlags(newFlags("version"), args[1:], stdout, versionUsage, 0); err == nil {
			fmt.Fprintf(stdout, "pushrelay %s (%s)\n", relay.Version, relay.Commit)
		}
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "pushrelay: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay %s: %s\n", args[0], strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 1
	}
	return 0
}

// newFlags makes a subcommand's flag set that prints nothing itself:
// parseFlags reports its errors once, and --help on stdout.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args, flags and positional arguments in any order.
// --help prints help and the flags on stdout and returns flag.ErrHelp;
// more than maxArgs positional arguments is an error that names them.
// The positional arguments are in fs.Args afterwards.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, help string, maxArgs int) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, help)
				if hasFlags(fs) {
					fmt.Fprintln(stdout, "\nFlags:")
					fs.SetOutput(stdout)
					fs.PrintDefaults()
				}
				return flag.ErrHelp
			}
			return fmt.Errorf("%w (pushrelay %s --help shows the usage)", err, fs.Name())
		}
		if fs.NArg() == 0 {
			break
		}
		if i := len(args) - fs.NArg() - 1; i >= 0 && args[i] == "--" {
			positional = append(positional, fs.Args()...) // after "--" nothing is a flag
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) > maxArgs {
		return fmt.Errorf("unexpected argument %q (pushrelay %s --help shows the usage)",
			strings.Join(positional[maxArgs:], " "), fs.Name())
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// configFlag adds --config to fs.
func configFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("PUSHRELAY_CONFIG")
	if def == "" {
		def = "pushrelay.yaml"
	}
	return fs.String("config", def, "configuration `file`: pushrelay YAML, or mattermost-push-proxy's config.json "+
		"(default $PUSHRELAY_CONFIG, else pushrelay.yaml)")
}

// noConfigHint adds to a missing configuration file's error how to name
// one, and where one comes from.
func noConfigHint(err error, path string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == path && errors.Is(pe, fs.ErrNotExist) {
		return fmt.Errorf("%w\n(name the configuration with --config FILE or $PUSHRELAY_CONFIG; README \"Run it\" has a "+
			"minimal one, and pushrelay migrate turns mattermost-push-proxy's config.json into one)", err)
	}
	return err
}

// configPath is --config, or the one positional argument when --config was
// not given; both at once is an error.
func configPath(fs *flag.FlagSet, flagValue string) (string, error) {
	if fs.NArg() == 0 {
		return flagValue, nil
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "config" })
	if set {
		return "", fmt.Errorf("two configurations, --config %s and %s: give one", flagValue, fs.Arg(0))
	}
	return fs.Arg(0), nil
}

// heapFloor is the heap the relay lets grow before it collects: just under
// the goals GOGC=50 gives at 128 senders (live heap about 7 MB), so that
// the peak RSS there stays where it was, while at 32 senders (live heap
// about 5 MB, goal 8.7 MB) the relay collects a third less often.
const heapFloor = 10 << 20

// tuneRuntime sets the Go runtime for a relay that serves, before it
// allocates much. It returns the heap floor it started, nil if none:
//   - unless the environment sets GOGC: GOGC=50, so that a large live
//     heap (a spool backlog, many senders) peaks at 1.5 times itself
//     rather than twice, and below heapFloor a higher GOGC, so that a small
//     heap is not collected many times a second;
//   - no heap-profile sampling unless metrics.pprof serves the profiles:
//     its table of sampled stacks would grow over the run.
func tuneRuntime(cfg *relay.Config) *heapfloor.Floor {
	var floor *heapfloor.Floor
	if os.Getenv("GOGC") == "" {
		floor = heapfloor.Start(heapFloor, 50)
	}
	if !cfg.Metrics.Pprof {
		runtime.MemProfileRate = 0
	}
	return floor
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve")
	flagPath := configFlag(fs)
	if err := parseFlags(fs, args, stdout, serveUsage, 1); err != nil {
		return err
	}
	p, err := configPath(fs, *flagPath)
	if err != nil {
		return err
	}
	path := &p
	cfg, err := relay.LoadConfig(*path, migrate.Legacy)
	if err != nil {
		return noConfigHint(err, *path)
	}
	if floor := tuneRuntime(cfg); floor != nil {
		defer floor.Stop()
	}
	log, err := relay.NewLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	srv, err := relay.NewServer(cfg, wiring.Providers, log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			next, err := relay.LoadConfig(*path, migrate.Legacy)
			if err == nil {
				err = srv.Reload(next)
			}
			if err != nil {
				log.Error("reload refused; the running configuration stays", "error", err.Error())
				continue
			}
			log.Info("configuration reloaded", "config", *path)
		case <-ctx.Done():
			log.Info("shutting down: draining in-flight requests")
			drain, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return srv.Shutdown(drain)
		}
	}
}

func check(args []string, stdout io.Writer) error {
	fs := newFlags("check")
	flagPath := configFlag(fs)
	withEgress := fs.Bool("egress", false, "also reach every host the apps use, through the configured egress path, "+
		"and print what works and what the network team must open")
	if err := parseFlags(fs, args, stdout, checkUsage, 1); err != nil {
		return err
	}
	path, err := configPath(fs, *flagPath)
	if err != nil {
		return err
	}
	// Every problem at once: keys, values, credentials, secrets and
	// certificates, without the spool, a listener or a connection.
	cfg, err := relay.CheckConfig(path, migrate.Legacy, wiring.Providers)
	if err != nil {
		return noConfigHint(err, path)
	}
	if _, err := relay.NewLogger(cfg.Log, io.Discard); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "config %s is valid: %d app(s), policy %s\n", path, len(cfg.Apps), cfg.Policy.Mode)
	fmt.Fprintln(stdout, phoneShows(cfg.Policy))
	if !*withEgress {
		return nil
	}
	// main's context does not reach here: stop on an interrupt ourselves.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintln(stdout)
	return egresscheck.CheckEgress(ctx, cfg, stdout)
}

// phoneShows says what the phones show under the policy's mode (the
// README's "What the phone shows").
func phoneShows(c policy.Config) string {
	scope := ""
	if len(c.Rules) > 0 {
		scope = " where no rule picks another mode"
	}
	text := c.GenericText
	if text == "" {
		text = policy.DefaultGenericText
	}
	switch c.Mode {
	case policy.IDOnly, "":
		return "what the phone shows" + scope + ": only ids leave; the app fetches the content from your Mattermost " +
			"server, which hands it out only with a Professional or Enterprise license, and only if the phone reaches " +
			"it (VPN). Without both, the phone shows \"" + text + "\" (sender \"Someone\" on Android). " +
			"See \"What the phone shows\" in the README."
	case policy.Full:
		return "what the phone shows" + scope + ": everything; the message text and the channel and sender names " +
			"go to Apple and Google."
	default:
		return "what the phone shows" + scope + ": \"" + text + "\" instead of the message text, which the app " +
			"does not fetch."
	}
}

func explainCmd(args []string, stdin *os.File, stdout io.Writer) error {
	fs := newFlags("policy explain")
	path := configFlag(fs)
	if err := parseFlags(fs, args, stdout, explainUsage, 1); err != nil {
		return err
	}
	var in io.Reader = stdin
	name := "stdin"
	if fs.NArg() > 0 {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		in, name = f, fs.Arg(0)
	} else if isTerminal(stdin) {
		return errors.New("no notification: name a FILE.json or pipe one in " +
			"(pushrelay policy explain --config pushrelay.yaml notification.json)")
	}
	cfg, err := relay.LoadConfig(*path, migrate.Legacy)
	if err != nil {
		return err
	}
	var n wire.Notification
	if err := json.NewDecoder(in).Decode(&n); err != nil {
		return fmt.Errorf("%s: not a send_push notification: %w", name, err)
	}
	return explain.Explain(cfg, n, stdout)
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// termWidth is $COLUMNS when set, else the width of the terminal out is,
// else 0 (the demo's 80).
func termWidth(out io.Writer) int {
	if c, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && c > 0 {
		return c
	}
	if f, ok := out.(*os.File); ok && isTerminal(f) {
		return terminalColumns(f)
	}
	return 0
}

func migrateCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate")
	if err := parseFlags(fs, args, stdout, migrateUsage, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("which file? pushrelay migrate FILE.json (mattermost-push-proxy's config.json); the YAML goes to stdout")
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	out, mapped, err := migrate.MigrateFile(fs.Arg(0), data, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	if _, err := stdout.Write(out); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "pushrelay migrate: converted %s:\n", fs.Arg(0))
	for _, m := range mapped {
		fmt.Fprintf(stderr, "  %s\n", m)
	}
	return nil
}
