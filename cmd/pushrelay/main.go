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
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/pushrelay/pushrelay/demo"
	"github.com/pushrelay/pushrelay/heapfloor"
	"github.com/pushrelay/pushrelay/loadgen"
	"github.com/pushrelay/pushrelay/relay"
	"github.com/pushrelay/pushrelay/relay/wire"
)

const usage = `pushrelay: a Mattermost push-notification relay for the DMZ.

Usage:
  pushrelay serve [--config FILE]   run the relay (config: --config, $PUSHRELAY_CONFIG or pushrelay.yaml)
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
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if dir := os.Getenv(loadgen.LookalikesEnv); dir != "" {
		// Started by `bench --sandbox` to serve its look-alikes.
		if err := loadgen.ServeLookalikes(ctx, dir, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "pushrelay: look-alikes: %v\n", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
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
		err = serve(ctx, args[1:], stderr)
	case "demo":
		err = runDemo(ctx, args[1:], stdout)
	case "check":
		err = check(args[1:], stdout)
	case "policy":
		if len(args) < 2 || args[1] != "explain" {
			fmt.Fprintf(stderr, "pushrelay policy: the only subcommand is explain\n\n%s", usage)
			return 2
		}
		err = explain(args[2:], os.Stdin, stdout)
	case "migrate":
		err = migrate(args[1:], stdout, stderr)
	case "bench":
		err = bench(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "pushrelay %s (%s)\n", relay.Version, relay.Commit)
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

func configFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("PUSHRELAY_CONFIG")
	if def == "" {
		def = "pushrelay.yaml"
	}
	return fs.String("config", def, "configuration `file` (YAML)")
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

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := relay.LoadConfig(*path)
	if err != nil {
		return err
	}
	if floor := tuneRuntime(cfg); floor != nil {
		defer floor.Stop()
	}
	log, err := relay.NewLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	srv, err := relay.NewServer(cfg, log)
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
			next, err := relay.LoadConfig(*path)
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
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := configFlag(fs)
	withEgress := fs.Bool("egress", false, "also reach every host the apps use, through the configured egress path, "+
		"and print what works and what the network team must open")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := relay.LoadConfig(*path)
	if err != nil {
		return err
	}
	if _, err := relay.NewLogger(cfg.Log, io.Discard); err != nil {
		return err
	}
	// Credentials, secrets and certificates, without the spool, a listener
	// or a connection.
	if err := relay.Check(cfg); err != nil {
		return fmt.Errorf("config %s: %w", *path, err)
	}
	fmt.Fprintf(stdout, "config %s is valid: %d app(s), policy %s\n", *path, len(cfg.Apps), cfg.Policy.Mode)
	if !*withEgress {
		return nil
	}
	// main's context does not reach here: stop on an interrupt ourselves.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintln(stdout)
	return relay.CheckEgress(ctx, cfg, stdout)
}

func explain(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("policy explain", flag.ContinueOnError)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := relay.LoadConfig(*path)
	if err != nil {
		return err
	}
	in, name := stdin, "stdin"
	if fs.NArg() > 0 {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		in, name = f, fs.Arg(0)
	}
	var n wire.Notification
	if err := json.NewDecoder(in).Decode(&n); err != nil {
		return fmt.Errorf("%s: not a send_push notification: %w", name, err)
	}
	return relay.Explain(cfg, n, stdout)
}

func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	keep := fs.Bool("keep", false, "keep the relay and the look-alikes serving after the demo, until interrupted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return demo.Run(ctx, stdout, demo.Options{Keep: *keep})
}

func migrate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: pushrelay migrate FILE.json (mattermost-push-proxy's config.json); the YAML goes to stdout")
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	out, mapped, err := relay.Migrate(data, os.LookupEnv)
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
