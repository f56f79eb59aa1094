package sandbox

import (
	"bytes"
	"crypto/ecdsa"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Payload limits, in bytes, as Apple documents them.
const (
	apnsMaxPayload     = 4096
	apnsMaxVoIPPayload = 5120
)

// apnsCertPrefix starts the subject CN of an Apple push certificate; the
// rest is the topic (bundle id) it is for.
const apnsCertPrefix = "Apple Push Services: "

// APNs is an in-process look-alike of Apple's HTTP/2 push gateway. It only
// serves POST /3/device/{token}, validates headers and payload like Apple,
// and answers with Apple's status codes and {"reason": ...} bodies.
//
// Authentication: a request on a connection that presented a TLS client
// certificate is accepted (certificate auth; the certificate is not
// verified). Otherwise, once TrustKey was called, the request must carry a
// provider token (ES256 JWT) signed by a trusted key; before that, any
// request is accepted.
type APNs struct {
	srv *server

	mu        sync.Mutex
	reqs      []*APNsRequest
	noRecord  bool // SetRecording(false): count, do not keep
	delivered int
	acks      ackTable // CountAckIDs
	dead      map[string]deadToken
	fault     faultSlot
	keys      map[string]apnsKey // by key id
}

// APNsRequest is a request the APNs look-alike received.
type APNsRequest struct {
	// Token is the device token from the path /3/device/{token}.
	Token string
	// Header holds the request headers as received (apns-topic,
	// apns-push-type, apns-priority, apns-expiration, apns-collapse-id,
	// authorization, ...).
	Header http.Header
	// Body is the raw JSON payload.
	Body []byte
	// Proto is the request's protocol, e.g. "HTTP/2.0".
	Proto string
	// ClientCert is the subject CommonName of the TLS client certificate, if
	// one was presented.
	ClientCert string
	// Status is the status the sandbox answered: 0 while the request is still
	// pending, or when it was reset or its client gave up.
	Status int
}

type deadToken struct {
	reason string
	at     time.Time
}

type apnsKey struct {
	teamID string
	pub    *ecdsa.PublicKey
}

// NewAPNs starts an APNs look-alike on 127.0.0.1 at a random port, serving
// HTTP/2 over TLS (ALPN "h2" only, like Apple). Close it when done.
func NewAPNs() *APNs {
	s := &APNs{dead: map[string]deadToken{}, keys: map[string]apnsKey{}}
	s.srv = startServer(http.HandlerFunc(s.serve), []string{"h2"})
	return s
}

// URL returns the base URL, "https://127.0.0.1:PORT"; pushes go to
// URL()+"/3/device/"+token.
func (s *APNs) URL() string { return s.srv.url() }

// Close shuts the look-alike down, aborting requests held by a Fault's Delay.
func (s *APNs) Close() { s.srv.close() }

// CertPEM returns the PEM of the server's TLS certificate, to trust it as an
// extra root.
func (s *APNs) CertPEM() []byte { return certPEM() }

// Client returns an HTTP/2 client that trusts the look-alike.
func (s *APNs) Client() *http.Client { return s.srv.client() }

// Requests returns copies of the requests received so far, accepted and
// rejected, in arrival order.
func (s *APNs) Requests() []APNsRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]APNsRequest, len(s.reqs))
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
func (s *APNs) SetRecording(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noRecord = !on
}

// Reset forgets the recorded requests, zeroes Delivered and empties the
// table of AckIDs (counting stays on if it was). Dead tokens, the fault
// and trusted keys stay.
func (s *APNs) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = nil
	s.delivered = 0
	s.acks.reset()
}

// CountAckIDs turns counting deliveries by ack_id on, from an empty
// table, or off, dropping the table. It works with recording off too, at
// the cost of one entry per notification rather than per request.
func (s *APNs) CountAckIDs(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acks.set(on)
}

// AckIDs returns how many times each ack_id was answered 200 since
// CountAckIDs(true) or the last Reset; nil when not counting. A push's
// ack_id is its payload's top-level "ack_id" ("" when it has none).
func (s *APNs) AckIDs() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acks.snapshot()
}

// KillToken makes later pushes to token fail with reason: "Unregistered"
// (the default when reason is empty) and "ExpiredToken" answer 410 with a
// "timestamp" (milliseconds since the epoch); any other reason
// ("BadDeviceToken", "DeviceTokenNotForTopic", ...) answers 400.
func (s *APNs) KillToken(token, reason string) {
	if reason == "" {
		reason = "Unregistered"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead[token] = deadToken{reason: reason, at: time.Now()}
}

// Fail replaces the current fault with f.
func (s *APNs) Fail(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault.set(f)
}

// Recover clears the fault.
func (s *APNs) Recover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault.clear()
}

// TrustKey trusts the ES256 signing key keyID of team teamID. Once called,
// every request without a client certificate must carry
// "authorization: bearer <JWT>" with header kid=keyID, claims iss=teamID and
// an iat at most an hour old; otherwise it is refused with 403 and reason
// MissingProviderToken, InvalidProviderToken or ExpiredProviderToken.
// Several keys may be trusted at once.
func (s *APNs) TrustKey(keyID, teamID string, pub *ecdsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[keyID] = apnsKey{teamID: teamID, pub: pub}
}

// Delivered returns how many requests were answered 200 (since the last
// Reset).
func (s *APNs) Delivered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered
}

// apnsError is a refusal: status, Apple's reason, and for 410 when the token
// stopped being valid.
type apnsError struct {
	status int
	reason string
	at     time.Time
}

func (s *APNs) serve(w http.ResponseWriter, r *http.Request) {
	token, isPush := strings.CutPrefix(r.URL.Path, "/3/device/")
	rec := &APNsRequest{
		Token: token,
		Body:  readBody(r),
		Proto: r.Proto,
	}
	hasCert := r.TLS != nil && len(r.TLS.PeerCertificates) > 0
	if hasCert {
		rec.ClientCert = r.TLS.PeerCertificates[0].Subject.CommonName
	}
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
			s.finish(rec, 0)
			abort()
		}
		if f.fails() {
			f.setRetryAfter(w.Header())
			reason := f.Reason
			if reason == "" {
				reason = apnsReasonFor(f.Status)
			}
			s.refuse(w, r, rec, apnsError{status: f.Status, reason: reason, at: time.Now()})
			return
		}
	}
	if e := s.check(r, rec, isPush, hasCert); e != nil {
		s.refuse(w, r, rec, *e)
		return
	}
	setAPNsID(w, r)
	s.finish(rec, http.StatusOK)
	w.WriteHeader(http.StatusOK)
}

// setAPNsID answers the request's apns-id, or a new one.
func setAPNsID(w http.ResponseWriter, r *http.Request) {
	// Header names in their canonical form: the lookups then need not
	// canonicalize (allocate) them.
	id := r.Header.Get("Apns-Id")
	if id == "" {
		id = newUUID()
	}
	w.Header().Set("Apns-Id", id)
}

// check validates a request the way Apple does, in roughly Apple's order.
func (s *APNs) check(r *http.Request, rec *APNsRequest, isPush, hasCert bool) *apnsError {
	bad := func(status int, reason string) *apnsError { return &apnsError{status: status, reason: reason} }
	switch {
	case isPush && rec.Token == "":
		return bad(http.StatusBadRequest, "MissingDeviceToken")
	case !isPush || strings.Contains(rec.Token, "/"):
		return bad(http.StatusNotFound, "BadPath")
	case r.Method != http.MethodPost:
		return bad(http.StatusMethodNotAllowed, "MethodNotAllowed")
	}
	if !hasCert {
		if reason := s.checkProviderToken(r.Header.Get("Authorization")); reason != "" {
			return bad(http.StatusForbidden, reason)
		}
	}
	for k, v := range r.Header {
		// EqualFold on 5 bytes is true only for 5 ASCII characters: the
		// same test as HasPrefix(ToLower(k), "apns-"), without a copy of k.
		if len(v) > 1 && len(k) >= 5 && strings.EqualFold(k[:5], "apns-") {
			return bad(http.StatusBadRequest, "DuplicateHeaders")
		}
	}
	topic := r.Header.Get("Apns-Topic")
	if topic == "" && strings.HasPrefix(rec.ClientCert, apnsCertPrefix) {
		topic = strings.TrimPrefix(rec.ClientCert, apnsCertPrefix)
	}
	pushType := r.Header.Get("Apns-Push-Type")
	if e := checkAPNsHeaders(r.Header, topic, pushType); e != "" {
		return bad(http.StatusBadRequest, e)
	}
	limit := apnsMaxPayload
	if pushType == "voip" {
		limit = apnsMaxVoIPPayload
	}
	if len(rec.Body) > limit {
		return bad(http.StatusRequestEntityTooLarge, "PayloadTooLarge")
	}
	if e := checkAPNsPayload(rec.Body); e != "" {
		return bad(http.StatusBadRequest, e)
	}
	s.mu.Lock()
	d, dead := s.dead[rec.Token]
	s.mu.Unlock()
	if dead {
		if d.reason == "Unregistered" || d.reason == "ExpiredToken" {
			return &apnsError{status: http.StatusGone, reason: d.reason, at: d.at}
		}
		return bad(http.StatusBadRequest, d.reason)
	}
	return nil
}

// checkProviderToken returns "" when the authorization header is acceptable,
// else Apple's reason for refusing it.
func (s *APNs) checkProviderToken(authz string) string {
	s.mu.Lock()
	keys := len(s.keys)
	s.mu.Unlock()
	if keys == 0 {
		return ""
	}
	scheme, raw, _ := strings.Cut(authz, " ")
	if authz == "" || !strings.EqualFold(scheme, "bearer") || raw == "" {
		return "MissingProviderToken"
	}
	t, err := parseJWT(raw)
	if err != nil {
		return "InvalidProviderToken"
	}
	s.mu.Lock()
	key, ok := s.keys[str(t.header, "kid")]
	s.mu.Unlock()
	if !ok || !t.verifyES256(key.pub) || str(t.claims, "iss") != key.teamID {
		return "InvalidProviderToken"
	}
	iat, ok := num(t.claims, "iat")
	now := time.Now().Unix()
	switch {
	case !ok || iat > now+60:
		return "InvalidProviderToken"
	case now-iat > 3600:
		return "ExpiredProviderToken"
	}
	return ""
}

var (
	apnsIDPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	apnsPushTypes = map[string]bool{
		"alert": true, "background": true, "location": true, "voip": true, "complication": true,
		"fileprovider": true, "mdm": true, "liveactivity": true, "pushtotalk": true, "widgets": true,
		"controls": true,
	}
)

// checkAPNsHeaders returns Apple's reason for the first bad apns-* header,
// or "".
func checkAPNsHeaders(h http.Header, topic, pushType string) string {
	switch {
	case topic == "":
		return "MissingTopic"
	case pushType != "" && !apnsPushTypes[pushType]:
		return "InvalidPushType"
	case pushType == "voip" && !strings.HasSuffix(topic, ".voip"):
		return "BadTopic"
	}
	if p := h.Get("Apns-Priority"); p != "" && p != "10" && p != "5" && p != "1" {
		return "BadPriority"
	}
	if e := h.Get("Apns-Expiration"); e != "" {
		if n, err := strconv.ParseInt(e, 10, 64); err != nil || n < 0 {
			return "BadExpirationDate"
		}
	}
	if id := h.Get("Apns-Id"); id != "" && !apnsIDPattern.MatchString(id) {
		return "BadMessageId"
	}
	if len(h.Get("Apns-Collapse-Id")) > 64 {
		return "BadCollapseId"
	}
	return ""
}

// checkAPNsPayload returns Apple's reason for a payload that is not a JSON
// object with an "aps" dictionary, or "".
func checkAPNsPayload(body []byte) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return "PayloadEmpty"
	}
	// The look-alike runs beside the relay under load: walk the tokens
	// rather than unmarshal (reflection, and a stack to grow in every
	// handler's goroutine). The walk takes only the usual shape, a JSON
	// object; json.Unmarshal settles the rest, as before.
	apsIsObject, ok := scanAPNsPayload(body)
	if !ok {
		var payload struct {
			APS jsontext.Value `json:"aps"`
		}
		if err := json.Unmarshal(body, &payload); err != nil {
			return "BadPayload"
		}
		apsIsObject = payload.APS.Kind() == '{'
	}
	if !apsIsObject {
		return "PayloadEmpty"
	}
	return ""
}

// scanAPNsPayload reports whether body, a JSON object that json.Unmarshal
// takes, has an "aps" member that is an object. ok is false when body is
// anything else: invalid, or valid but not an object.
func scanAPNsPayload(body []byte) (apsIsObject, ok bool) {
	d := getBodyDecoder(body)
	defer putBodyDecoder(d)
	ok = d.members(func(name jsontext.Value) bool {
		if isName(name, "aps") {
			apsIsObject = d.dec.PeekKind() == '{'
		}
		return d.skip()
	}) && d.end()
	return apsIsObject && ok, ok
}

// apnsReasonFor is the reason Apple gives with status.
func apnsReasonFor(status int) string {
	switch status {
	case http.StatusForbidden:
		return "Forbidden"
	case http.StatusNotFound:
		return "BadPath"
	case http.StatusMethodNotAllowed:
		return "MethodNotAllowed"
	case http.StatusGone:
		return "Unregistered"
	case http.StatusRequestEntityTooLarge:
		return "PayloadTooLarge"
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	case http.StatusInternalServerError:
		return "InternalServerError"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	}
	return strings.ReplaceAll(http.StatusText(status), " ", "")
}

// refuse answers e in Apple's format: {"reason": ...}, plus "timestamp" for
// 410.
func (s *APNs) refuse(w http.ResponseWriter, r *http.Request, rec *APNsRequest, e apnsError) {
	body := appendJSONString(append(make([]byte, 0, 64), `{"reason":`...), e.reason)
	if e.status == http.StatusGone {
		body = strconv.AppendInt(append(body, `,"timestamp":`...), e.at.UnixMilli(), 10)
	}
	body = append(body, '}')
	setAPNsID(w, r)
	s.finish(rec, e.status)
	writeJSONBody(w, e.status, body)
}

// finish records the status answered to rec.
func (s *APNs) finish(rec *APNsRequest, status int) {
	var id string
	if status == http.StatusOK && s.acks.on.Load() {
		id = apnsAckID(rec.Body) // outside the lock
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Status = status
	if status == http.StatusOK {
		s.delivered++
		s.acks.add(id)
	}
}
