package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded runs the in-process JetStream on cfg.Dir: no listener,
// file store. It writes every message to its file before acknowledging it;
// the syncer, not the server, makes the writes durable (see syncer). The
// directory is locked so that two relays never share one store.
// writeFailed is called (from the server's goroutines) with the server's
// log line when its store fails to write.
func startEmbedded(cfg Config, log *slog.Logger, writeFailed func(string)) (*server.Server, func(), error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("spool.dir: %w", err)
	}
	unlock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("spool.dir: %w", err)
	}
	opts := &server.Options{
		ServerName:             "pushrelay-spool",
		DontListen:             true,
		JetStream:              true,
		StoreDir:               cfg.Dir,
		SyncAlways:             false,                   // the syncer syncs, in groups
		JetStreamMaxStore:      2*cfg.MaxBytes + 64<<20, // room for the stream's bound, whatever the disk reports
		NoSigs:                 true,
		DisableJetStreamBanner: true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		unlock()
		return nil, nil, fmt.Errorf("spool.dir: embedded JetStream: %w", err)
	}
	sl := &serverLog{log: log, writeFailed: writeFailed}
	ns.SetLogger(sl, false, false)
	ns.Start()
	if !ns.ReadyForConnections(30*time.Second) || !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		unlock()
		if msg := sl.fatal.Load(); msg != nil {
			return nil, nil, fmt.Errorf("spool.dir: embedded JetStream: %s", *msg)
		}
		return nil, nil, errors.New("spool.dir: embedded JetStream did not start")
	}
	return ns, unlock, nil
}

// embeddedMsgDir is where the embedded server keeps the spool's message
// blocks: <store>/jetstream/<account>/streams/<stream>/msgs.
func embeddedMsgDir(dir string) string {
	return filepath.Join(dir, server.JetStreamStoreDir, server.DEFAULT_GLOBAL_ACCOUNT, "streams", StreamName, "msgs")
}

// restartJetStream stops the embedded server's JetStream and starts it
// again on the same store, keeping what is on disk; the connections stay.
// A stream whose store failed to write (a full disk) refuses every write
// until then: JetStream keeps the error and does not answer publishes.
func restartJetStream(ns *server.Server, dir string) error {
	jsc := ns.JetStreamConfig()
	if jsc == nil {
		return errors.New("spool.dir: restarting the embedded JetStream: it is not running")
	}
	if err := ns.ShutdownJetStream(); err != nil {
		return fmt.Errorf("spool.dir: stopping the embedded JetStream: %w", err)
	}
	c := *jsc
	c.StoreDir = dir // it adds "jetstream" again
	if err := ns.EnableJetStream(&c); err != nil {
		return fmt.Errorf("spool.dir: starting the embedded JetStream again: %w", err)
	}
	return nil
}

// hearStoreLog: tests turn it off to see the health check find a write
// error that the log did not tell.
var hearStoreLog = true

// storeWriteError is the spool stream's write error as the embedded
// server's health check reports it, or "" when it writes.
func storeWriteError(ns *server.Server) string {
	hs := ns.Healthz(&server.HealthzOptions{Account: server.DEFAULT_GLOBAL_ACCOUNT, Stream: StreamName})
	if hs == nil || !strings.Contains(hs.Error, "write error") {
		return ""
	}
	return hs.Error
}

// serverLog passes the embedded server's log on to slog: notices as debug,
// warnings and errors as such. It keeps the last fatal message, which the
// server logs (and then carries on without JetStream) when it cannot start,
// and tells writeFailed of a store's write error.
type serverLog struct {
	log         *slog.Logger
	fatal       atomic.Pointer[string]
	writeFailed func(string) // may be nil
}

func (l *serverLog) Noticef(format string, v ...any) {
	l.log.Debug("spool: nats: " + fmt.Sprintf(format, v...))
}
func (l *serverLog) Warnf(format string, v ...any) {
	l.log.Warn("spool: nats: " + fmt.Sprintf(format, v...))
}
func (l *serverLog) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	// The file store says "Critical write error", the stream "critical write error".
	if l.writeFailed != nil && hearStoreLog && strings.Contains(msg, "ritical write error") {
		l.writeFailed(msg)
	}
	l.log.Error("spool: nats: " + msg)
}
func (l *serverLog) Debugf(string, ...any) {}
func (l *serverLog) Tracef(string, ...any) {}
func (l *serverLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.fatal.Store(&msg)
	l.log.Error("spool: nats: " + msg)
}
