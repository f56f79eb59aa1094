package sandbox

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// maxBody bounds what a sandbox reads of a request body.
const maxBody = 1 << 20

// serverCert is the certificate every sandbox of this process serves: fresh,
// self-signed (so it is its own root), valid for the loopback addresses.
var serverCert = sync.OnceValue(func() tlsIdentity {
	id, err := newServerCert()
	if err != nil {
		panic(fmt.Sprintf("sandbox: cannot make a server certificate: %v", err))
	}
	return id
})

type tlsIdentity struct {
	cert tls.Certificate
	pem  []byte // the certificate only
}

func newServerCert() (tlsIdentity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tlsIdentity{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tlsIdentity{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pushrelay sandbox", Organization: []string{"pushrelay sandbox"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tlsIdentity{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tlsIdentity{}, err
	}
	return tlsIdentity{
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// server is the HTTP/2 + TLS listener under a look-alike.
type server struct {
	ts        *httptest.Server
	done      chan struct{} // closed by close: ends pending delays
	closeOnce sync.Once
}

// startServer serves h on 127.0.0.1:random over TLS, offering the ALPN
// protocols protos ("h2" first), and requesting (not requiring) a client
// certificate.
func startServer(h http.Handler, protos []string) *server {
	id := serverCert()
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true
	ts.TLS = &tls.Config{
		Certificates: []tls.Certificate{id.cert},
		ClientAuth:   tls.RequestClientCert,
		NextProtos:   protos,
		MinVersion:   tls.VersionTLS12,
	}
	// Handshake errors of clients that do not trust us are expected in tests;
	// keep them off the demo's terminal.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	return &server{ts: ts, done: make(chan struct{})}
}

func (s *server) url() string { return s.ts.URL }

func (s *server) close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ts.Close()
	})
}

// client returns an HTTP client that trusts the sandbox and speaks HTTP/2.
func (s *server) client() *http.Client { return s.ts.Client() }

// certPEM returns the PEM of the certificate the sandboxes serve.
func certPEM() []byte { return bytes.Clone(serverCert().pem) }

// readBody reads at most maxBody+1 bytes of r's body, so callers can tell an
// oversized body from one that fits.
func readBody(r *http.Request) []byte {
	// io.ReadAll, but with one allocation when the length is announced
	// (HTTP/2 clients announce it): room for the body, and for the byte that
	// shows it is over the limit, or EOF.
	size := 512
	if n := r.ContentLength; n > 0 && n <= maxBody {
		size = int(n) + 1
	}
	b := make([]byte, 0, size)
	lr := io.LimitedReader{R: r.Body, N: maxBody + 1}
	for {
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			return b
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// writeJSON answers status with v as its JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSONBody(w, status, body)
}

// writeJSONBody answers status with body, JSON, as writeJSON does.
func writeJSONBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	w.Write(body)
}

// appendJSONString appends s as a JSON string, byte for byte as
// encoding/json (hence writeJSON) writes it, so that the answers built by
// hand read the same as the ones it marshaled.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			// Rare in answers: leave its escapes (HTML characters, invalid
			// UTF-8, U+2028...) to encoding/json.
			q, _ := json.Marshal(s)
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// bodyDecoder walks a request body token by token with jsontext, which
// validates as json.Unmarshal does (syntax, UTF-8, duplicate names) without
// reflection, maps or recursion. It is pooled: a Decoder is large.
type bodyDecoder struct {
	rd   bytes.Reader
	dec  jsontext.Decoder
	name []byte // scratch
}

var bodyDecoders = sync.Pool{New: func() any { return new(bodyDecoder) }}

// getBodyDecoder returns a decoder reading body; give it back with
// putBodyDecoder.
func getBodyDecoder(body []byte) *bodyDecoder {
	d := bodyDecoders.Get().(*bodyDecoder)
	d.rd.Reset(body)
	d.dec.Reset(&d.rd)
	return d
}

// putBodyDecoder gives d back to the pool.
func putBodyDecoder(d *bodyDecoder) {
	d.rd.Reset(nil) // do not keep the body alive
	bodyDecoders.Put(d)
}

// readName reads an object member name, or the end of the object: it
// returns the name's raw JSON (quoted, escapes kept), or nil at the '}'.
func (d *bodyDecoder) readName() (jsontext.Value, error) {
	if d.dec.PeekKind() == '}' {
		_, err := d.dec.ReadToken()
		return nil, err
	}
	return d.dec.ReadValue()
}

// members reads an object, calling each with every member's name; each
// reads or skips the member's value and returns false when the walk
// should stop. members returns false when the next value is no object,
// when the JSON is invalid, or when each stopped the walk. The decoder
// refuses duplicate names, as json.Unmarshal does: each member is seen
// once at most.
func (d *bodyDecoder) members(each func(name jsontext.Value) bool) bool {
	if tok, err := d.dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return false
	}
	for {
		name, err := d.readName()
		switch {
		case err != nil:
			return false
		case name == nil:
			return true
		case !each(name):
			return false
		}
	}
}

// membersOrNull is members for a value that may also be null.
func (d *bodyDecoder) membersOrNull(each func(name jsontext.Value) bool) bool {
	if d.dec.PeekKind() == '{' {
		return d.members(each)
	}
	tok, err := d.dec.ReadToken()
	return err == nil && tok.Kind() == 'n'
}

// skip skips the next value and reports whether it was valid.
func (d *bodyDecoder) skip() bool { return d.dec.SkipValue() == nil }

// end reports whether nothing but white space follows the top-level value.
func (d *bodyDecoder) end() bool {
	_, err := d.dec.ReadToken()
	return err == io.EOF
}

// isName reports whether the raw JSON string name is want, as json.Unmarshal
// matches names: exactly, after unquoting.
func isName(name jsontext.Value, want string) bool {
	if bytes.IndexByte(name, '\\') < 0 {
		return string(name[1:len(name)-1]) == want
	}
	return unquote(name) == want
}

// unquote returns the string a raw JSON string holds; the decoder
// validated it.
func unquote(v jsontext.Value) string {
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1])
	}
	u, _ := jsontext.AppendUnquote(nil, v)
	return string(u)
}

// randomHex returns n random bytes, hex encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// idBase and idCount make the ids the look-alikes hand out: random per
// process, then counted, so they are unique without reading crypto/rand
// for every request.
var (
	idBase  = func() (b [16]byte) { rand.Read(b[:]); return b }()
	idCount atomic.Uint64
)

// nextID returns a number that no other call of this process returns (for
// 2^64 calls).
func nextID() uint64 { return binary.BigEndian.Uint64(idBase[8:]) + idCount.Add(1) }

// newUUID returns an id in the format of a random (version 4) UUID in
// upper case, like APNs ids.
func newUUID() string {
	var b [16]byte
	copy(b[:8], idBase[:8])
	binary.BigEndian.PutUint64(b[8:], nextID())
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // variant 10: 62 bits of nextID remain, unique for 2^62 ids
	const digits = "0123456789ABCDEF"
	var out [36]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = digits[c>>4], digits[c&0x0f]
		j += 2
	}
	return string(out[:])
}

// abort ends the request without an answer: an HTTP/2 stream reset.
func abort() { panic(http.ErrAbortHandler) }
