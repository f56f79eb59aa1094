package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pushrelay/pushrelay/relay/spool"
	"github.com/pushrelay/pushrelay/relay/wire"
)

// Version and Commit identify the build; set them with -ldflags -X.
var (
	Version = "dev"
	Commit  = "unknown"
)

// Server is a running relay: the ingress listener that speaks Mattermost's
// push-proxy API and the metrics listener.
type Server struct {
	relay    *Relay
	metrics  *metrics
	log      *slog.Logger
	inFlight chan struct{}
	maxBody  int64
	limit    *limiter                   // nil when limits.rate_per_client is 0
	auth     atomic.Pointer[authorizer] // swapped on reload
	tls      atomic.Pointer[tls.Config] // the current certificates, swapped on reload

	ingress, metricsSrv  *http.Server
	ingressLn, metricsLn net.Listener
	wg                   sync.WaitGroup
}

// NewServer builds a relay from cfg: policy, egress, one provider per app.
// It reads credential files but opens no connection and no listener.
func NewServer(cfg *Config, log *slog.Logger) (*Server, error) {
	m := newMetrics(Version, cfg.Metrics.LegacyNames)
	if len(cfg.Migrated) > 0 {
		log.Info("configuration converted from a mattermost-push-proxy config.json (pushrelay migrate prints it as YAML)",
			"mapped", cfg.Migrated)
	}
	// Credentials first: a bad key file should not leave a spool behind.
	r, err := newRelay(cfg, m, log)
	if err != nil {
		return nil, err
	}
	sp, err := spool.Open(cfg.Spool, spool.Backoff{Initial: cfg.Delivery.Backoff.Initial, Max: cfg.Delivery.Backoff.Max}, log)
	if err != nil {
		return nil, err
	}
	r.spool = sp
	m.watchSpool(sp)
	s := &Server{
		relay:    r,
		metrics:  m,
		log:      log,
		inFlight: make(chan struct{}, cfg.Limits.MaxInFlight),
		maxBody:  cfg.Limits.MaxBodyBytes,
		limit:    newLimiter(cfg.Limits.RatePerClient, cfg.Limits.Burst),
	}
	a, err := newAuthorizer(cfg.Auth)
	if err != nil {
		sp.Close(context.Background())
		return nil, err
	}
	s.auth.Store(a)
	s.ingress = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: cfg.Limits.ReadHeaderTimeout,
		ReadTimeout:       cfg.Limits.ReadTimeout,
		WriteTimeout:      cfg.Delivery.Timeout + cfg.Limits.ReadTimeout,
		IdleTimeout:       cfg.Limits.IdleTimeout,
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if cfg.TLS.CertFile != "" {
		tc, err := serverTLS(cfg.TLS)
		if err != nil {
			sp.Close(context.Background())
			return nil, err
		}
		s.tls.Store(tc)
		// Every handshake takes the certificates in force now, so SIGHUP can
		// swap them under a running listener.
		s.ingress.TLSConfig = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.tls.Load(), nil },
		}
	}
	if cfg.Metrics.Listen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
		if cfg.Metrics.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		s.metricsSrv = &http.Server{Addr: cfg.Metrics.Listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	s.ingress.Addr = cfg.Listen
	return s, nil
}

func serverTLS(c TLSConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.client_ca_file: %s holds no PEM certificate", c.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Check loads everything cfg names (provider credentials, secrets, TLS
// certificates) as NewServer would, without opening the spool, a listener
// or a connection. Errors name the key at fault.
func Check(cfg *Config) error {
	r := &Relay{metrics: newMetrics(Version, cfg.Metrics.LegacyNames), log: slog.New(slog.DiscardHandler)}
	if _, err := r.build(cfg); err != nil {
		return err
	}
	if _, err := newAuthorizer(cfg.Auth); err != nil {
		return err
	}
	if cfg.TLS.CertFile != "" {
		if _, err := serverTLS(cfg.TLS); err != nil {
			return err
		}
	}
	return nil
}

// Start starts redelivering from the spool, opens the listeners and serves
// in the background.
func (s *Server) Start() error {
	if err := s.relay.consume(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.ingress.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.ingressLn = ln
	useTLS := s.ingress.TLSConfig != nil
	if s.metricsSrv != nil {
		mln, err := net.Listen("tcp", s.metricsSrv.Addr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("metrics.listen: %w", err)
		}
		s.metricsLn = mln
		s.serve(s.metricsSrv, mln, false)
	}
	s.serve(s.ingress, ln, useTLS)
	s.log.Info("relay listening", "listen", ln.Addr().String(), "tls", useTLS, "metrics", s.MetricsAddr(), "version", Version)
	return nil
}

func (s *Server) serve(srv *http.Server, ln net.Listener, useTLS bool) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var err error
		if useTLS {
			err = srv.ServeTLS(ln, "", "") // certificates are in srv.TLSConfig
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("listener stopped", "addr", ln.Addr().String(), "error", err.Error())
		}
	}()
}

// Addr is the ingress listener's address, once started.
func (s *Server) Addr() string { return addrOf(s.ingressLn) }

// MetricsAddr is the metrics listener's address, once started ("" if off).
func (s *Server) MetricsAddr() string { return addrOf(s.metricsLn) }

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Reload swaps in the policy, provider credentials, auth settings and TLS
// certificates of cfg without dropping requests; listeners and limits keep
// their startup values. On any error nothing changes.
func (s *Server) Reload(cfg *Config) error {
	st, err := s.relay.build(cfg)
	if err != nil {
		return err
	}
	a, err := newAuthorizer(cfg.Auth)
	if err != nil {
		return err
	}
	var tc *tls.Config
	if s.tls.Load() != nil {
		if cfg.TLS.CertFile == "" {
			return errors.New("tls: cannot be turned off by a reload; restart the relay")
		}
		if tc, err = serverTLS(cfg.TLS); err != nil {
			return err
		}
	} else if cfg.TLS.CertFile != "" {
		return errors.New("tls: cannot be turned on by a reload; restart the relay")
	}
	s.relay.swap(st)
	s.auth.Store(a)
	if tc != nil {
		s.tls.Store(tc)
	}
	return s.relay.consume()
}

// Shutdown stops accepting requests, waits (until ctx ends) for the
// in-flight ones to be answered, each delivered or durably spooled, and for
// the acks on their way upstream, then closes the spool, whose entries wait
// on disk for the next start.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.ingress.Shutdown(ctx)
	err = errors.Join(err, s.relay.waitAcks(ctx))
	err = errors.Join(err, s.relay.spool.Close(ctx))
	if s.metricsSrv != nil {
		err = errors.Join(err, s.metricsSrv.Shutdown(ctx))
	}
	s.wg.Wait()
	return err
}

// Routes, as the `route` metric label names them.
const (
	routeSendPush = "send_push"
	routeAck      = "ack"
	routeVersion  = "version"
	routeHealth   = "healthz"
	routeReady    = "readyz"
	routeRoot     = "root"
	routeOther    = "other"
)

// Handler is the ingress HTTP API: Mattermost's push-proxy routes plus
// health and readiness.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/v1/send_push", s.route(routeSendPush, http.MethodPost, s.api(routeSendPush, s.sendPush)))
	mux.Handle("/api/v1/ack", s.route(routeAck, http.MethodPost, s.api(routeAck, s.ack)))
	mux.Handle("/version", s.route(routeVersion, http.MethodGet, s.version))
	mux.Handle("/healthz", s.route(routeHealth, http.MethodGet, s.healthz))
	mux.Handle("/readyz", s.route(routeReady, http.MethodGet, s.readyz))
	mux.Handle("/{$}", s.route(routeRoot, http.MethodGet, s.root))
	mux.Handle("/", s.route(routeOther, "", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "no such route")
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A secret path prefix (/SECRET/api/v1/send_push) is taken off
		// before routing; the path is never logged.
		if path, carried, ok := s.auth.Load().splitSecretPath(r.URL.Path); carried {
			r2 := *r
			u := *r.URL
			u.Path, u.RawPath = path, ""
			r2.URL = &u
			if ok {
				r2 = *r2.WithContext(context.WithValue(r.Context(), secretPathKey{}, true))
			}
			r = &r2
		}
		mux.ServeHTTP(w, r)
	})
}

type secretPathKey struct{}

// admit applies the gate in front of the API routes: source network,
// shared secret, per-client rate. It answers the refusal itself and
// returns false, or returns true.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, route string) bool {
	a := s.auth.Load()
	client := a.clientAddr(r)
	refuse := func(code int, reason, msg string) bool {
		s.metrics.reject(reason)
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request refused", slog.String("reason", reason),
			slog.String("route", route), slog.String("client", client.String()), slog.String("peer", remoteIP(r)))
		writeError(w, code, msg)
		return false
	}
	if !a.allowNetwork(client) {
		return refuse(http.StatusForbidden, rejectNetwork, "this address may not use the relay (auth.allowed_networks)")
	}
	if len(a.secrets) > 0 && r.Context().Value(secretPathKey{}) == nil && !a.knows(secretFrom(r)) {
		w.Header().Set("WWW-Authenticate", `Basic realm="pushrelay"`)
		return refuse(http.StatusUnauthorized, rejectUnauthenticated, errNoSecret.Error())
	}
	if ok, wait := s.limit.allow(client, time.Now()); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		return refuse(http.StatusTooManyRequests, rejectRate, "too many requests from this client (limits.rate_per_client)")
	}
	return true
}

// route wraps a handler with the method check and the ingress metrics.
func (s *Server) route(name, method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		if method != "" && r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			rec.Header().Set("Allow", method)
			writeError(rec, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here; use "+method)
		} else {
			h(rec, r)
		}
		s.metrics.handled(name, rec.code, time.Since(start))
	})
}

// api puts the admission gate in front of an API handler.
func (s *Server) api(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.admit(w, r, route) {
			h(w, r)
		}
	}
}

func (s *Server) sendPush(w http.ResponseWriter, r *http.Request) {
	select {
	case s.inFlight <- struct{}{}:
		defer func() { <-s.inFlight }()
	default:
		s.metrics.reject(rejectInFlight)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "too many notifications in flight; retry shortly")
		return
	}
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()

	var n wire.Notification
	if code, msg := s.decode(w, r, &n); code != 0 {
		s.metrics.reject(rejectReason(code))
		writeError(w, code, msg)
		return
	}
	if !s.auth.Load().allowServerID(n.ServerID) {
		s.metrics.reject(rejectServerID)
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request refused", slog.String("reason", rejectServerID),
			slog.String("route", routeSendPush), slog.String("peer", remoteIP(r)))
		writeError(w, http.StatusForbidden, "server_id is not in auth.allowed_server_ids")
		return
	}
	answer(w, s.relay.Push(r.Context(), n))
}

func (s *Server) ack(w http.ResponseWriter, r *http.Request) {
	var a wire.Ack
	if code, msg := s.decode(w, r, &a); code != 0 {
		s.metrics.reject(rejectReason(code))
		writeError(w, code, msg)
		return
	}
	var missing string
	switch {
	case a.ID == "":
		missing = "id"
	case a.Platform == "":
		missing = "platform"
	case a.Type == "":
		missing = "type"
	}
	if missing != "" {
		s.metrics.reject(rejectBadRequest)
		writeError(w, http.StatusBadRequest, missing+" is missing")
		return
	}
	s.relay.Ack(a)
	writeJSON(w, http.StatusOK, wire.OK())
}

// decode reads one JSON value of at most maxBody bytes into v. It answers
// a status code and message for a request that is not a push at all, or 0.
// The Mattermost server sends no Content-Type, so none is required. The
// body is read into a pooled buffer; v keeps no reference to it.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) (int, string) {
	buf := bodies.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 {
			buf.Reset()
			bodies.Put(buf)
		}
	}()
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err == nil {
		if len(bytes.TrimSpace(buf.Bytes())) == 0 {
			err = io.EOF
		} else if u, ok := v.(json.Unmarshaler); ok {
			// wire.Notification decodes itself, faster than json.Decoder.
			err = u.UnmarshalJSON(buf.Bytes())
		} else {
			err = json.NewDecoder(buf).Decode(v)
		}
	}
	if err == nil {
		return 0, ""
	}
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("body is larger than limits.max_body_bytes (%d bytes)", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return http.StatusBadRequest, "body is empty"
	case errors.As(err, &typeErr):
		return http.StatusBadRequest, fmt.Sprintf("field %s: expected %s, got JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)
	}
	return http.StatusBadRequest, "body is not valid JSON"
}

// bodies are the buffers requests are read into.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func rejectReason(code int) string {
	switch code {
	case http.StatusRequestEntityTooLarge:
		return rejectTooLarge
	}
	return rejectBadRequest
}

func (s *Server) version(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": Version, "hash": Commit})
}

func (s *Server) root(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, wire.OK())
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, wire.OK())
}

// readyz answers 200 when the spool can be written and every app's
// credentials are usable.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	var problems []string
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	// A full spool still delivers directly, so it stays ready (and says so
	// in pushrelay_spool_messages); a spool that cannot be written is not.
	if err := s.relay.spool.Check(ctx); err != nil && !errors.Is(err, spool.ErrFull) {
		problems = append(problems, "spool: "+err.Error())
	}
	now := time.Now()
	for _, a := range s.relay.state.Load().all() {
		if !a.certExpiry.IsZero() && now.After(a.certExpiry) {
			problems = append(problems, fmt.Sprintf("app %s: certificate expired %s", a.name, a.certExpiry.UTC().Format(time.RFC3339)))
		}
	}
	if len(problems) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "NOT_READY", "problems": problems})
		return
	}
	writeJSON(w, http.StatusOK, wire.OK())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// answer writes a send_push answer; OK and REMOVE, nearly every answer,
// go out as bytes encoded once.
func answer(w http.ResponseWriter, resp wire.Response) {
	var body []byte
	switch resp {
	case wire.OK():
		body = answerOK
	case wire.Remove():
		body = answerRemove
	default:
		writeJSON(w, http.StatusOK, resp)
		return
	}
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

var (
	jsonContentType = []string{"application/json"}
	answerOK        = encoded(wire.OK())
	answerRemove    = encoded(wire.Remove())
)

// encoded is v as writeJSON writes it.
func encoded(v any) []byte {
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(v)
	return b.Bytes()
}

// writeError answers a request that is not a push (or was refused) with a
// 4xx/5xx and a short JSON error, in the same shape as a FAIL answer.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, wire.Response{Status: wire.StatusFail, Error: msg})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}
