package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/valyala/fasthttp"

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

	ingress              *fasthttp.Server
	ingressAddr          string
	metricsSrv           *http.Server
	ingressLn, metricsLn net.Listener
	wg                   sync.WaitGroup
}

// NewServer builds a relay from cfg: policy, egress, and one provider per
// app, each made by build (again on every Reload). It reads credential
// files but opens no connection and no listener.
func NewServer(cfg *Config, build Providers, log *slog.Logger) (*Server, error) {
	m := newMetrics(Version, cfg.Metrics.LegacyNames)
	if len(cfg.Migrated) > 0 {
		log.Info("configuration converted from a mattermost-push-proxy config.json (pushrelay migrate prints it as YAML)",
			"mapped", cfg.Migrated)
	}
	// Credentials first: a bad key file should not leave a spool behind.
	r, err := newRelay(cfg, build, m, log)
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
	// The ingress is HTTP/1.1 only (Mattermost reaches the relay through a
	// forward proxy), served by fasthttp: per request it takes about two
	// thirds of the CPU of net/http's server, and less memory.
	readTimeout := cfg.Limits.ReadTimeout
	s.ingress = &fasthttp.Server{
		Handler:      s.serveIngress,
		ErrorHandler: s.requestError,
		// read_header_timeout runs from a request's first byte to the end
		// of its header, read_timeout from there to the end of its body.
		ReadTimeout: cfg.Limits.ReadHeaderTimeout,
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{ReadTimeout: readTimeout}
		},
		WriteTimeout:   cfg.Delivery.Timeout + cfg.Limits.ReadTimeout,
		IdleTimeout:    cfg.Limits.IdleTimeout,
		ReadBufferSize: cfg.Limits.MaxHeaderBytes, // also the largest header fasthttp reads
		// Each connection keeps its write buffer; an answer is a few
		// hundred bytes (a larger one is written in more calls), so
		// fasthttp's default of 4 KiB held 3 KiB per connection idle.
		WriteBufferSize:    1 << 10,
		MaxRequestBodySize: int(min(cfg.Limits.MaxBodyBytes, math.MaxInt32)),
		CloseOnShutdown:    true,
		// Nothing of a request (its path may carry a secret) in an error.
		SecureErrorLogMessage:        true,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		Logger:                       debugLogger{log},
	}
	s.ingressAddr = cfg.Listen
	if cfg.TLS.CertFile != "" {
		tc, err := serverTLS(cfg.TLS)
		if err != nil {
			sp.Close(context.Background())
			return nil, err
		}
		s.tls.Store(tc)
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
	return s, nil
}

func serverTLS(c TLSConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
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

// Check loads everything cfg names (provider credentials through build,
// secrets, TLS certificates) as NewServer would, without opening the spool,
// a listener or a connection. Errors name the key at fault.
func Check(cfg *Config, build Providers) error {
	r := &Relay{metrics: newMetrics(Version, cfg.Metrics.LegacyNames), log: slog.New(slog.DiscardHandler), providers: build}
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
	tcp, err := net.Listen("tcp", s.ingressAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.ingressLn = tcp
	var ln net.Listener = lingerListener{tcp}
	if s.metricsSrv != nil {
		mln, err := net.Listen("tcp", s.metricsSrv.Addr)
		if err != nil {
			tcp.Close()
			return fmt.Errorf("metrics.listen: %w", err)
		}
		s.metricsLn = mln
		s.serve(mln, func() error { return s.metricsSrv.Serve(mln) })
	}
	useTLS := s.tls.Load() != nil
	if useTLS {
		// Every handshake takes the certificates in force now, so SIGHUP can
		// swap them under a running listener.
		ln = tls.NewListener(ln, &tls.Config{
			MinVersion:         tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.tls.Load(), nil },
		})
	}
	s.serve(ln, func() error { return s.ingress.Serve(ln) })
	s.log.Info("relay listening", "listen", s.Addr(), "tls", useTLS, "metrics", s.MetricsAddr(), "version", Version)
	return nil
}

// serve runs a listener's serve loop in the background.
func (s *Server) serve(ln net.Listener, serve func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
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
	err := s.ingress.ShutdownWithContext(ctx)
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

// A route is one path of the ingress API.
type route struct {
	name   string // the `route` metric label
	method string // the one method it answers (GET also answers HEAD); "" for any
	api    bool   // behind the admission gate
	serve  func(*Server, *fasthttp.RequestCtx)
}

var (
	sendPushRoute = route{routeSendPush, http.MethodPost, true, (*Server).sendPush}
	ackRoute      = route{routeAck, http.MethodPost, true, (*Server).ack}
	versionRoute  = route{routeVersion, http.MethodGet, false, (*Server).version}
	healthRoute   = route{routeHealth, http.MethodGet, false, (*Server).healthz}
	readyRoute    = route{routeReady, http.MethodGet, false, (*Server).readyz}
	rootRoute     = route{routeRoot, http.MethodGet, false, (*Server).root}
	otherRoute    = route{routeOther, "", false, func(_ *Server, c *fasthttp.RequestCtx) {
		writeError(c, http.StatusNotFound, "no such route")
	}}
)

func routeFor(path []byte) *route {
	switch string(path) {
	case "/api/v1/send_push":
		return &sendPushRoute
	case "/api/v1/ack":
		return &ackRoute
	case "/version":
		return &versionRoute
	case "/healthz":
		return &healthRoute
	case "/readyz":
		return &readyRoute
	case "/":
		return &rootRoute
	}
	return &otherRoute
}

// request is what the ingress knows of a request before its route runs.
type request struct {
	route *route
	auth  *authorizer // as it was when the request came
	// secretPath says the path began with one of the secrets
	// (/SECRET/api/v1/send_push), which authenticates the request.
	secretPath bool
}

// resolve finds a request's route. A secret path prefix is taken off
// before routing; the path is never logged.
func (s *Server) resolve(c *fasthttp.RequestCtx) request {
	a := s.auth.Load()
	path := c.Path()
	var known bool
	if len(a.secrets) > 0 {
		if stripped, carried, ok := a.splitSecretPath(string(path)); carried {
			path, known = []byte(stripped), ok
		}
	}
	return request{route: routeFor(path), auth: a, secretPath: known}
}

// serveIngress is the ingress HTTP API: Mattermost's push-proxy routes plus
// health and readiness.
func (s *Server) serveIngress(c *fasthttp.RequestCtx) {
	start := time.Now()
	req := s.resolve(c)
	rt := req.route
	method := string(c.Method())
	switch {
	case rt.method != "" && method != rt.method && !(rt.method == http.MethodGet && method == http.MethodHead):
		c.Response.Header.Set("Allow", rt.method)
		writeError(c, http.StatusMethodNotAllowed, "method "+method+" is not allowed here; use "+rt.method)
	case !rt.api || s.admit(c, req):
		rt.serve(s, c)
	}
	s.metrics.handled(rt.name, c.Response.StatusCode(), time.Since(start))
}

// requestError answers a request fasthttp could not read: too large, too
// slow, or not HTTP/1.x. fasthttp closes the connection after the answer;
// unless the client was too slow, some of its request may still be on its
// way, so the close lingers (lingerConn) for the client to read the answer.
func (s *Server) requestError(c *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		lingerOnClose(c)
	}
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		// The header was read, so the route is known.
		s.metrics.reject(rejectTooLarge)
		writeError(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is larger than limits.max_body_bytes (%d bytes)", s.maxBody))
		s.metrics.handled(s.resolve(c).route.name, http.StatusRequestEntityTooLarge, 0)
	case errors.As(err, &small):
		writeError(c, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request header is larger than limits.max_header_bytes (%d bytes)", s.ingress.ReadBufferSize))
	case errors.As(err, &netErr) && netErr.Timeout():
		writeError(c, http.StatusRequestTimeout, "request not received in time (limits.read_header_timeout, limits.read_timeout)")
	default:
		writeError(c, http.StatusBadRequest, "not an HTTP/1.1 request")
	}
}

// admit applies the gate in front of the API routes: source network,
// shared secret, per-client rate. It answers the refusal itself and
// returns false, or returns true.
func (s *Server) admit(c *fasthttp.RequestCtx, req request) bool {
	a := req.auth
	peer := peerAddr(c)
	client := a.clientAddr(peer, &c.Request.Header)
	refuse := func(code int, reason, msg string) bool {
		s.metrics.reject(reason)
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "request refused", slog.String("reason", reason),
			slog.String("route", req.route.name), slog.String("client", client.String()), slog.String("peer", peer.String()))
		writeError(c, code, msg)
		return false
	}
	if !a.allowNetwork(client) {
		return refuse(http.StatusForbidden, rejectNetwork, "this address may not use the relay (auth.allowed_networks)")
	}
	if len(a.secrets) > 0 && !req.secretPath && !a.knows(secretFrom(&c.Request.Header)) {
		c.Response.Header.Set("WWW-Authenticate", `Basic realm="pushrelay"`)
		return refuse(http.StatusUnauthorized, rejectUnauthenticated, errNoSecret.Error())
	}
	if ok, wait := s.limit.allow(client, time.Now()); !ok {
		c.Response.Header.Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		return refuse(http.StatusTooManyRequests, rejectRate, "too many requests from this client (limits.rate_per_client)")
	}
	return true
}

func (s *Server) sendPush(c *fasthttp.RequestCtx) {
	select {
	case s.inFlight <- struct{}{}:
		defer func() { <-s.inFlight }()
	default:
		s.metrics.reject(rejectInFlight)
		c.Response.Header.Set("Retry-After", "1")
		writeError(c, http.StatusServiceUnavailable, "too many notifications in flight; retry shortly")
		return
	}
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()

	var n wire.Notification // on the stack: decoded by a static call
	body := c.PostBody()
	msg := emptyBody(body)
	if msg == "" {
		msg = decodeProblem(n.UnmarshalJSON(body))
	}
	if msg != "" {
		s.metrics.reject(rejectBadRequest)
		writeError(c, http.StatusBadRequest, msg)
		return
	}
	if !s.auth.Load().allowServerID(n.ServerID) {
		s.metrics.reject(rejectServerID)
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "request refused", slog.String("reason", rejectServerID),
			slog.String("route", routeSendPush), slog.String("peer", peerAddr(c).String()))
		writeError(c, http.StatusForbidden, "server_id is not in auth.allowed_server_ids")
		return
	}
	// The push outlives neither its delivery timeout nor the spool write,
	// whatever becomes of the connection it came on.
	answer(c, s.relay.Push(context.Background(), n))
}

func (s *Server) ack(c *fasthttp.RequestCtx) {
	var a wire.Ack
	body := c.PostBody()
	msg := emptyBody(body)
	if msg == "" {
		msg = decodeProblem(json.NewDecoder(bytes.NewReader(body)).Decode(&a))
	}
	if msg != "" {
		s.metrics.reject(rejectBadRequest)
		writeError(c, http.StatusBadRequest, msg)
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
		s.ackIncomplete(c, missing) // 200 FAIL, as the old proxy answers
		return
	}
	s.relay.Ack(a)
	writeJSON(c, http.StatusOK, wire.OK())
}

// emptyBody says "body is empty" for a request body (already bounded by
// limits.max_body_bytes) with nothing but white space, else "". The
// Mattermost server sends no Content-Type, so none is required.
func emptyBody(body []byte) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return "body is empty"
	}
	return ""
}

// decodeProblem says why a body did not decode, or "" for a nil err.
// What was decoded keeps no reference to the body, which fasthttp reuses.
func decodeProblem(err error) string {
	if err == nil {
		return ""
	}
	if typeErr, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return fmt.Sprintf("field %s: expected %s, got JSON %s", typeErr.Field, typeErr.Type, typeErr.Value)
	}
	return "body is not valid JSON"
}

func (s *Server) version(c *fasthttp.RequestCtx) {
	writeJSON(c, http.StatusOK, map[string]string{"version": Version, "hash": Commit})
}

func (s *Server) root(c *fasthttp.RequestCtx) {
	writeJSON(c, http.StatusOK, wire.OK())
}

func (s *Server) healthz(c *fasthttp.RequestCtx) {
	writeJSON(c, http.StatusOK, wire.OK())
}

// readyz answers 200 when the spool can be written and every app's
// credentials are usable.
func (s *Server) readyz(c *fasthttp.RequestCtx) {
	var problems []string
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// A full spool (spool.max_messages/max_bytes) still delivers directly,
	// so it stays ready (and says so in pushrelay_spool_messages); a spool
	// that cannot be written is not: a full spool.dir (spool.ErrDiskFull,
	// not an ErrFull), an unreachable JetStream or one without quorum.
	if err := s.relay.spool.Check(ctx); err != nil && !errors.Is(err, spool.ErrFull) {
		problems = append(problems, "spool: "+err.Error())
	}
	now := time.Now()
	for _, a := range s.relay.state.Load().all() {
		if !a.certExpiry.IsZero() && now.After(a.certExpiry) {
			problems = append(problems, fmt.Sprintf("app %s: certificate expired %s", a.name, a.certExpiry.UTC().Format(time.RFC3339)))
		}
	}
	s.relay.reprobeEgress()
	problems = append(problems, s.relay.egressProblems()...)
	if len(problems) > 0 {
		writeJSON(c, http.StatusServiceUnavailable, map[string]any{"status": "NOT_READY", "problems": problems})
		return
	}
	writeJSON(c, http.StatusOK, wire.OK())
}

func writeJSON(c *fasthttp.RequestCtx, code int, v any) {
	c.SetStatusCode(code)
	c.SetContentTypeBytes(jsonContentType)
	c.ResetBody()
	_ = json.NewEncoder(c).Encode(v)
}

// answer writes a send_push answer; OK and REMOVE, nearly every answer,
// go out as bytes encoded once.
func answer(c *fasthttp.RequestCtx, resp wire.Response) {
	var body []byte
	switch resp {
	case wire.OK():
		body = answerOK
	case wire.Remove():
		body = answerRemove
	default:
		writeJSON(c, http.StatusOK, resp)
		return
	}
	c.SetContentTypeBytes(jsonContentType)
	c.SetBody(body)
}

var (
	jsonContentType = []byte("application/json")
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
func writeError(c *fasthttp.RequestCtx, code int, msg string) {
	writeJSON(c, code, wire.Response{Status: wire.StatusFail, Error: msg})
}

// debugLogger hands fasthttp's own messages (connection errors) to the
// relay's log at debug level.
type debugLogger struct{ log *slog.Logger }

// Printf logs one fasthttp message.
func (l debugLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...), "source", "ingress")
	}
}
