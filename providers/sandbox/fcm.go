package sandbox

import (
	"bytes"
	"crypto/rsa"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Google's identifiers the firebase SDK looks for.
const (
	jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	fcmErrorType   = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
	tokenLifetime  = time.Hour
)

// Scopes that allow sending with FCM.
var fcmScopes = []string{
	"https://www.googleapis.com/auth/firebase.messaging",
	"https://www.googleapis.com/auth/cloud-platform",
}

// FCM is an in-process look-alike of Firebase Cloud Messaging HTTP v1 and of
// Google's OAuth 2.0 token endpoint. Sends are
// POST {URL}/v1/projects/{project}/messages:send with
// "Authorization: Bearer <an access token this sandbox issued>"; errors use
// Google's JSON error format with the FcmError detail, so the firebase SDK
// classifies them (messaging.IsUnregistered, IsUnavailable, ...).
//
// It serves HTTP/2 and HTTP/1.1 over TLS (ALPN "h2", "http/1.1"), as Google
// does. A Fault applies to sends, not to the token endpoint.
type FCM struct {
	srv *server

	mu        sync.Mutex
	reqs      []*FCMRequest
	noRecord  bool // SetRecording(false): count, do not keep
	delivered int
	acks      ackTable // CountAckIDs
	fetches   int
	tokens    map[string]accessToken
	dead      map[string]string // device token -> FcmError code
	fault     faultSlot
	keys      map[string]*rsa.PublicKey // by client_email
}

// FCMRequest is a send the FCM look-alike received.
type FCMRequest struct {
	// Project is the project id from the path.
	Project string
	// Token is message.token from the body.
	Token string
	// Header holds the request headers as received (authorization, ...).
	Header http.Header
	// Body is the raw JSON body: {"message":{...}} as the firebase Go SDK
	// sends it ("validate_only" may be present).
	Body []byte
	// Proto is the request's protocol, e.g. "HTTP/2.0".
	Proto string
	// Status is the status the sandbox answered: 0 while the request is still
	// pending, or when it was reset or its client gave up.
	Status int
}

type accessToken struct {
	expiry time.Time
	scope  string // as asked in the assertion; "" when unknown
}

// NewFCM starts an FCM look-alike on 127.0.0.1 at a random port, serving
// HTTP/2 (and HTTP/1.1) over TLS. Close it when done.
func NewFCM() *FCM {
	s := &FCM{
		tokens: map[string]accessToken{},
		dead:   map[string]string{},
		keys:   map[string]*rsa.PublicKey{},
	}
	s.srv = startServer(s.route(s.newMux()), []string{"h2", "http/1.1"})
	return s
}

// newMux routes the look-alike's requests: the token endpoint, and sends.
func (s *FCM) newMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.serveToken)
	mux.HandleFunc("/", s.serveSend)
	return mux
}

// route serves sends directly and leaves the other requests to mux.
func (s *FCM) route(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// mux would route a send path to serveSend too, unless it redirects
		// it to its clean form, which only a project "." or ".." needs:
		// spare its work (and a stack to grow) on every send.
		if project, ok := parseSendPath(r.URL.Path); ok && project != "." && project != ".." {
			s.serveSend(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	}
}

// URL returns the base URL, "https://127.0.0.1:PORT". Sends are
// POST URL()+"/v1/projects/{project}/messages:send"; the firebase SDK's
// endpoint option is URL()+"/v1".
func (s *FCM) URL() string { return s.srv.url() }

// TokenURL returns the OAuth 2.0 token endpoint, URL()+"/token". It takes
// the JWT-bearer grant (form-encoded grant_type and assertion) and answers
// {"access_token":"...","token_type":"Bearer","expires_in":3600}.
func (s *FCM) TokenURL() string { return s.srv.url() + "/token" }

// Close shuts the look-alike down, aborting requests held by a Fault's Delay.
func (s *FCM) Close() { s.srv.close() }

// CertPEM returns the PEM of the server's TLS certificate, to trust it as an
// extra root.
func (s *FCM) CertPEM() []byte { return certPEM() }

// Client returns an HTTP/2 client that trusts the look-alike.
func (s *FCM) Client() *http.Client { return s.srv.client() }

// Requests returns copies of the sends received so far (not the token
// requests), accepted and rejected, in arrival order.
func (s *FCM) Requests() []FCMRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FCMRequest, len(s.reqs))
	for i, r := range s.reqs {
		out[i] = *r
		out[i].Header = r.Header.Clone()
		out[i].Body = bytes.Clone(r.Body)
	}
	return out
}

// SetRecording turns keeping requests on (the default) or off; off, the
// look-alike still answers and counts Delivered, without growing in memory
// (for load tests).
func (s *FCM) SetRecording(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noRecord = !on
}

// Reset forgets the recorded requests, zeroes Delivered and TokenFetches
// and empties the table of AckIDs (counting stays on if it was). Issued
// access tokens stay valid; dead tokens, the fault and trusted keys stay.
func (s *FCM) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = nil
	s.delivered = 0
	s.fetches = 0
	s.acks.reset()
}

// CountAckIDs turns counting deliveries by ack_id on, from an empty
// table, or off, dropping the table. It works with recording off too, at
// the cost of one entry per notification rather than per request.
func (s *FCM) CountAckIDs(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acks.set(on)
}

// AckIDs returns how many times each ack_id was answered 200 (validate_only
// sends aside) since CountAckIDs(true) or the last Reset; nil when not
// counting. A send's ack_id is its message.data.ack_id ("" when it has
// none).
func (s *FCM) AckIDs() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acks.snapshot()
}

// KillToken makes later sends to the device token fail with the FcmError
// code: "UNREGISTERED" (the default when code is empty) answers 404
// NOT_FOUND, "SENDER_ID_MISMATCH" 403 PERMISSION_DENIED,
// "THIRD_PARTY_AUTH_ERROR" 401 UNAUTHENTICATED, anything else
// ("INVALID_ARGUMENT", ...) 400 INVALID_ARGUMENT.
func (s *FCM) KillToken(token, code string) {
	if code == "" {
		code = "UNREGISTERED"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead[token] = code
}

// Fail replaces the current fault with f. It applies to sends only.
func (s *FCM) Fail(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault.set(f)
}

// Recover clears the fault.
func (s *FCM) Recover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault.clear()
}

// TokenFetches returns how many access tokens were issued (since the last
// Reset).
func (s *FCM) TokenFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// Delivered returns how many sends were answered 200 (since the last Reset),
// not counting validate_only sends, which FCM does not deliver.
func (s *FCM) Delivered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered
}

// TrustKey trusts the RS256 key of the service account clientEmail. Once
// called, the token endpoint verifies every assertion (signature by the key
// of its iss, aud == TokenURL(), not expired) and refuses others with 400
// {"error":"invalid_grant"}. Before that, any assertion is accepted. Several
// service accounts may be trusted at once.
func (s *FCM) TrustKey(clientEmail string, pub *rsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[clientEmail] = pub
}

// serveToken is the OAuth 2.0 token endpoint (JWT-bearer grant only).
func (s *FCM) serveToken(w http.ResponseWriter, r *http.Request) {
	oauthError := func(status int, code, desc string) {
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost {
		oauthError(http.StatusMethodNotAllowed, "invalid_request", "POST required")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		oauthError(http.StatusBadRequest, "invalid_request", "cannot parse the form")
		return
	}
	if g := r.PostForm.Get("grant_type"); g != jwtBearerGrant {
		oauthError(http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+g)
		return
	}
	assertion := r.PostForm.Get("assertion")
	if assertion == "" {
		oauthError(http.StatusBadRequest, "invalid_request", "Missing required parameter: assertion")
		return
	}
	scope, problem := s.checkAssertion(assertion)
	if problem != "" {
		oauthError(http.StatusBadRequest, "invalid_grant", problem)
		return
	}
	tok := "ya29.sandbox-" + randomHex(24)
	s.mu.Lock()
	s.tokens[tok] = accessToken{expiry: time.Now().Add(tokenLifetime), scope: scope}
	s.fetches++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(tokenLifetime.Seconds()),
	})
}

// checkAssertion verifies a JWT-bearer assertion when keys are trusted. It
// returns the scope the assertion asks for, or Google's description of why
// it is refused.
func (s *FCM) checkAssertion(assertion string) (scope, problem string) {
	t, perr := parseJWT(assertion)
	s.mu.Lock()
	trusting := len(s.keys) > 0
	var pub *rsa.PublicKey
	if perr == nil {
		pub = s.keys[str(t.claims, "iss")]
	}
	s.mu.Unlock()
	if !trusting {
		if perr != nil {
			return "", "" // not even a JWT; accepted, scope unknown
		}
		return str(t.claims, "scope"), ""
	}
	const timeframe = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
	if perr != nil {
		return "", "Invalid JWT: " + perr.Error()
	}
	now := time.Now().Unix()
	exp, hasExp := num(t.claims, "exp")
	iat, hasIat := num(t.claims, "iat")
	switch {
	case pub == nil:
		return "", fmt.Sprintf("Invalid JWT: unknown issuer %q", str(t.claims, "iss"))
	case !t.verifyRS256(pub):
		return "", "Invalid JWT Signature."
	case str(t.claims, "aud") != s.TokenURL():
		return "", fmt.Sprintf("Invalid JWT: aud is %q, want %q", str(t.claims, "aud"), s.TokenURL())
	case !hasExp || exp <= now || exp-now > 3600+300:
		return "", timeframe
	case hasIat && iat > now+300:
		return "", timeframe
	}
	return str(t.claims, "scope"), ""
}

// fcmBody is the part of a send the sandbox looks at, for json.Unmarshal.
type fcmBody struct {
	ValidateOnly bool `json:"validate_only"`
	Message      *struct {
		Token string                    `json:"token"`
		Data  map[string]jsontext.Value `json:"data"`
	} `json:"message"`
}

// fcmSend is what check needs of a send's body.
type fcmSend struct {
	validateOnly bool
	token        string // message.token
	badData      string // a message.data member whose value is not a string
	hasBadData   bool
}

// parseFCMBody reads a send's body, or returns json.Unmarshal's error.
func parseFCMBody(body []byte) (fcmSend, error) {
	// The look-alike runs beside the relay under load: walk the tokens
	// rather than unmarshal (reflection, maps, and a stack to grow in every
	// handler's goroutine). The walk takes only the usual shape; invalid
	// JSON and unusual shapes go to json.Unmarshal, whose error the answer
	// quotes.
	if f, ok := scanFCMBody(body); ok {
		return f, nil
	}
	var b fcmBody
	if err := json.Unmarshal(body, &b); err != nil {
		return fcmSend{}, err
	}
	var f fcmSend
	f.validateOnly = b.ValidateOnly
	if b.Message != nil {
		f.token = b.Message.Token
		for k, v := range b.Message.Data {
			if v.Kind() != '"' {
				f.badData, f.hasBadData = k, true
				break
			}
		}
	}
	return f, nil
}

// scanFCMBody reads body as json.Unmarshal reads it into an fcmBody. ok is
// false when it is invalid or has a shape the walk leaves to json.Unmarshal:
// not an object, or a member fcmBody has that is of another type.
func scanFCMBody(body []byte) (f fcmSend, ok bool) {
	d := getBodyDecoder(body)
	defer putBodyDecoder(d)
	data := func(name jsontext.Value) bool {
		if !f.hasBadData {
			// Peeking at the value ends the validity of name: copy it.
			d.name = append(d.name[:0], name...)
			if d.dec.PeekKind() != '"' {
				f.badData, f.hasBadData = unquote(d.name), true
			}
		}
		return d.skip()
	}
	message := func(name jsontext.Value) bool {
		switch {
		case isName(name, "token"):
			v, err := d.dec.ReadValue()
			if err != nil || v.Kind() != '"' && v.Kind() != 'n' {
				return false
			}
			if v.Kind() == '"' {
				f.token = unquote(v)
			}
			return true
		case isName(name, "data"):
			return d.membersOrNull(data)
		}
		return d.skip()
	}
	ok = d.members(func(name jsontext.Value) bool {
		switch {
		case isName(name, "validate_only"):
			tok, err := d.dec.ReadToken()
			f.validateOnly = tok.Kind() == 't'
			return err == nil && (tok.Kind() == 't' || tok.Kind() == 'f' || tok.Kind() == 'n')
		case isName(name, "message"):
			return d.membersOrNull(message)
		}
		return d.skip()
	}) && d.end()
	return f, ok
}

// serveSend serves POST /v1/projects/{project}/messages:send.
func (s *FCM) serveSend(w http.ResponseWriter, r *http.Request) {
	project, isSend := parseSendPath(r.URL.Path)
	rec := &FCMRequest{Project: project, Body: readBody(r), Proto: r.Proto}
	body, jsonErr := parseFCMBody(rec.Body)
	rec.Token = body.token
	s.mu.Lock()
	if !s.noRecord {
		// Only a kept request needs its own copy of the header; the
		// validation reads r's.
		rec.Header = r.Header.Clone()
		s.reqs = append(s.reqs, rec)
	}
	f, faulty := s.fault.take()
	s.mu.Unlock()

	if faulty {
		if !f.wait(r.Context(), s.srv.done) || f.Reset {
			s.finish(rec, 0, false)
			abort()
		}
		if f.fails() {
			f.setRetryAfter(w.Header())
			s.refuse(w, rec, faultError(f))
			return
		}
	}
	if e := s.check(r, rec, isSend, &body, jsonErr); e != nil {
		s.refuse(w, rec, *e)
		return
	}
	name := "projects/" + project + "/messages/fake_message_id"
	if !body.validateOnly {
		name = messageName(project)
	}
	s.finish(rec, http.StatusOK, !body.validateOnly)
	out := appendJSONString(append(make([]byte, 0, len(name)+12), `{"name":`...), name)
	writeJSONBody(w, http.StatusOK, append(out, '}'))
}

// messageName returns a new message name for project, of FCM's shape:
// projects/{project}/messages/0:{ms since the epoch}%{16 hex digits}.
func messageName(project string) string {
	var buf [128]byte
	b := append(buf[:0], "projects/"...)
	b = append(b, project...)
	b = append(b, "/messages/0:"...)
	b = strconv.AppendInt(b, time.Now().UnixMilli(), 10)
	b = append(b, '%')
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], nextID())
	return string(hex.AppendEncode(b, id[:]))
}

// parseSendPath returns the project of /v1/projects/{project}/messages:send.
func parseSendPath(path string) (project string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/v1/projects/")
	if !ok {
		return "", false
	}
	project, ok = strings.CutSuffix(rest, "/messages:send")
	if !ok || project == "" || strings.Contains(project, "/") {
		return "", false
	}
	return project, true
}

// check validates a send: path, method, access token, body, device token.
func (s *FCM) check(r *http.Request, rec *FCMRequest, isSend bool, body *fcmSend, jsonErr error) *googleError {
	switch {
	case !isSend:
		return &googleError{http.StatusNotFound, "NOT_FOUND", "The requested URL " + r.URL.Path + " was not found on this server.", ""}
	case r.Method != http.MethodPost:
		return &googleError{http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "Method " + r.Method + " not allowed.", ""}
	}
	if e := s.checkAccessToken(r.Header.Get("Authorization")); e != nil {
		return e
	}
	invalid := func(msg string) *googleError {
		return &googleError{http.StatusBadRequest, "INVALID_ARGUMENT", msg, "INVALID_ARGUMENT"}
	}
	switch {
	case len(rec.Body) > maxBody:
		return invalid("Request payload size exceeds the limit.")
	case jsonErr != nil:
		return invalid("Invalid JSON payload received. " + jsonErr.Error())
	case body.token == "":
		return invalid("Recipient of the message is not set.")
	case body.hasBadData:
		return invalid(fmt.Sprintf("Invalid value at 'message.data[%s].value' (TYPE_STRING)", body.badData))
	}
	s.mu.Lock()
	code, dead := s.dead[rec.Token]
	s.mu.Unlock()
	if dead {
		return deadTokenError(code)
	}
	return nil
}

// checkAccessToken accepts only unexpired access tokens this sandbox issued
// for a scope that allows FCM.
func (s *FCM) checkAccessToken(authz string) *googleError {
	scheme, tok, _ := strings.Cut(authz, " ")
	s.mu.Lock()
	at, ok := s.tokens[tok]
	s.mu.Unlock()
	if !strings.EqualFold(scheme, "bearer") || !ok || time.Now().After(at.expiry) {
		return &googleError{http.StatusUnauthorized, "UNAUTHENTICATED",
			"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", ""}
	}
	if at.scope == "" {
		return nil
	}
	for _, granted := range strings.Fields(at.scope) {
		for _, want := range fcmScopes {
			if granted == want {
				return nil
			}
		}
	}
	return &googleError{http.StatusForbidden, "PERMISSION_DENIED", "Request had insufficient authentication scopes.", ""}
}

// googleError is an error in Google's JSON format; fcmCode, when set, is
// the FcmError detail's errorCode.
type googleError struct {
	code    int
	status  string
	message string
	fcmCode string
}

func deadTokenError(code string) *googleError {
	switch code {
	case "UNREGISTERED":
		return &googleError{http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.", code}
	case "SENDER_ID_MISMATCH":
		return &googleError{http.StatusForbidden, "PERMISSION_DENIED", "SenderId mismatch", code}
	case "THIRD_PARTY_AUTH_ERROR":
		return &googleError{http.StatusUnauthorized, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service", code}
	}
	return &googleError{http.StatusBadRequest, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token", code}
}

// faultError is the answer to a failing Fault: its Status, its Reason (or
// the google.rpc status usual for Status), and the FcmError code the SDK
// maps for 429, 500 and 503.
func faultError(f Fault) googleError {
	e := googleError{code: f.Status, status: f.Reason}
	var status string
	switch f.Status {
	case http.StatusBadRequest:
		status, e.message = "INVALID_ARGUMENT", "Request contains an invalid argument."
	case http.StatusUnauthorized:
		status, e.message = "UNAUTHENTICATED", "Request had invalid authentication credentials."
	case http.StatusForbidden:
		status, e.message = "PERMISSION_DENIED", "The caller does not have permission"
	case http.StatusNotFound:
		status, e.message = "NOT_FOUND", "Requested entity was not found."
	case http.StatusTooManyRequests:
		status, e.message, e.fcmCode = "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages.", "QUOTA_EXCEEDED"
	case http.StatusInternalServerError:
		status, e.message, e.fcmCode = "INTERNAL", "Internal error encountered.", "INTERNAL"
	case http.StatusServiceUnavailable:
		status, e.message, e.fcmCode = "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"
	default:
		status, e.message = "UNKNOWN", http.StatusText(f.Status)
	}
	if e.status == "" {
		e.status = status
	}
	return e
}

// refuse answers e in Google's format:
// {"error":{"code":...,"message":...,"status":...,"details":[FcmError]}}.
func (s *FCM) refuse(w http.ResponseWriter, rec *FCMRequest, e googleError) {
	if e.code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/"`)
	}
	s.finish(rec, e.code, false)
	writeJSONBody(w, e.code, e.appendJSON(make([]byte, 0, 256)))
}

// appendJSON appends e as refuse answers it, as encoding/json marshals
// {"error":{"code":...,"message":...,"status":...,"details":[...]}}.
func (e googleError) appendJSON(b []byte) []byte {
	b = strconv.AppendInt(append(b, `{"error":{"code":`...), int64(e.code), 10)
	b = appendJSONString(append(b, `,"message":`...), e.message)
	b = appendJSONString(append(b, `,"status":`...), e.status)
	if e.fcmCode != "" {
		b = appendJSONString(append(b, `,"details":[{"@type":`...), fcmErrorType)
		b = appendJSONString(append(b, `,"errorCode":`...), e.fcmCode)
		b = append(b, "}]"...)
	}
	return append(b, "}}"...)
}

// finish records the status answered to rec; delivered counts it.
func (s *FCM) finish(rec *FCMRequest, status int, delivered bool) {
	var id string
	if delivered && s.acks.on.Load() {
		id = fcmAckID(rec.Body) // outside the lock
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Status = status
	if delivered {
		s.delivered++
		s.acks.add(id)
	}
}
