package egress

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Response header blocks are decoded here rather than by x/net's Framer
// (ReadMetaHeaders), which allocates a frame and a field slice per answer:
// readLoop hands us HEADERS and CONTINUATION frames, whose order the
// Framer's ReadFrameHeader has checked (CONTINUATION only after a HEADERS
// without END_HEADERS, on its stream, nothing else in between), and each
// fragment goes to the connection's HPACK decoder, which emits into
// h2Conn.blk. The checks and their outcomes are those of x/net's
// readMetaFrame, so that the answers it took are taken and those it failed
// fail alike.

// h2HeaderBlock is the header block being read, from its HEADERS frame to
// END_HEADERS. Reader goroutine only.
type h2HeaderBlock struct {
	streamID  uint32
	endStream bool
	// fields holds the fields decoded so far, the pseudo-header ones
	// (nPseudo) first: one after a regular field is invalid. Its room is
	// reused from block to block.
	fields     []hpack.HeaderField
	nPseudo    int
	sawRegular bool
	// The header list bytes (SETTINGS_MAX_HEADER_LIST_SIZE) left, with
	// "trailer" fields counted apart, as x/net does.
	remain, trailerRemain uint32
	truncated             bool  // a field went over: it and the rest were dropped
	invalid               error // a field was malformed: it and the rest were dropped
}

// h2KeptFields bounds the room of h2HeaderBlock.fields kept between
// blocks: a huge block once must not cost memory for the connection's
// life.
const h2KeptFields = 64

var (
	errH2PseudoAfterRegular = errors.New("pseudo header field after regular")
	errH2MixedPseudo        = errors.New("mix of request and response pseudo headers")
)

// onHeaderFrame reads the payload of HEADERS or CONTINUATION frame fh and
// decodes its fragment of the header block; at END_HEADERS, the answer
// goes to onHeaders. A malformed block is an http2.StreamError, as
// ReadFrame returns it; HPACK errors and what x/net does not decode are the
// connection's errors.
func (c *h2Conn) onHeaderFrame(fh http2.FrameHeader) error {
	// At most 16 KiB, our SETTINGS_MAX_FRAME_SIZE, as ReadFrameHeader
	// checked.
	if cap(c.frag) < int(fh.Length) {
		c.frag = make([]byte, fh.Length)
	}
	p := c.frag[:fh.Length]
	if _, err := io.ReadFull(c.br, p); err != nil {
		return fmt.Errorf("reading a %v frame: %w", fh.Type, err)
	}
	b := &c.blk
	if fh.Type == http2.FrameHeaders {
		var err error
		if p, err = h2HeadersFragment(fh, p); err != nil {
			return err
		}
		*b = h2HeaderBlock{
			streamID:      fh.StreamID,
			endStream:     fh.Flags.Has(http2.FlagHeadersEndStream),
			fields:        b.fields[:0],
			remain:        h2MaxHeaderBytes,
			trailerRemain: h2MaxHeaderBytes,
		}
		c.hdec.SetEmitEnabled(true)
	}
	// As x/net: a fragment more than twice the size left (any, once the
	// list went over), or any after a malformed field (whose size was not
	// counted), is not worth decoding.
	if int64(len(p)) > 2*(int64(b.remain)+int64(b.trailerRemain)) {
		return fmt.Errorf("response header block on stream %d far above %d bytes: %w", b.streamID, h2MaxHeaderBytes, http2.ConnectionError(http2.ErrCodeProtocol))
	}
	if b.invalid != nil {
		return fmt.Errorf("response header block on stream %d continued after %v: %w", b.streamID, b.invalid, http2.ConnectionError(http2.ErrCodeProtocol))
	}
	// Decoded even for a stream that ended: the table must stay in step
	// with the server's encoder.
	if _, err := c.hdec.Write(p); err != nil {
		return fmt.Errorf("decoding a response header block: %w: %w", err, http2.ConnectionError(http2.ErrCodeCompression))
	}
	if !fh.Flags.Has(http2.FlagHeadersEndHeaders) { // same bit on CONTINUATION
		return nil
	}
	if err := c.hdec.Close(); err != nil {
		return fmt.Errorf("decoding a response header block: %w: %w", err, http2.ConnectionError(http2.ErrCodeCompression))
	}
	err := b.check()
	if err == nil {
		err = c.onHeaders(b)
	}
	// Not to keep values alive, nor much room.
	clear(b.fields)
	if cap(b.fields) > h2KeptFields {
		b.fields = nil
	}
	return err
}

// h2HeadersFragment returns the header block fragment in payload p of
// HEADERS frame fh: without its padding and priority.
func h2HeadersFragment(fh http2.FrameHeader, p []byte) ([]byte, error) {
	if fh.StreamID == 0 {
		return nil, fmt.Errorf("HEADERS frame with stream ID 0: %w", http2.ConnectionError(http2.ErrCodeProtocol))
	}
	pad := 0
	if fh.Flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 {
			return nil, fmt.Errorf("HEADERS frame too short for its pad length: %w", http2.ConnectionError(http2.ErrCodeFrameSize))
		}
		pad, p = int(p[0]), p[1:]
	}
	if fh.Flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return nil, fmt.Errorf("HEADERS frame too short for its priority: %w", http2.ConnectionError(http2.ErrCodeFrameSize))
		}
		p = p[5:]
	}
	if pad > len(p) {
		// x/net resets the stream, leaving the fragment undecoded and
		// so its HPACK decoder out of step with the server's encoder:
		// a connection error, as RFC 9113 6.2 has it.
		return nil, fmt.Errorf("HEADERS frame padded beyond its payload: %w", http2.ConnectionError(http2.ErrCodeProtocol))
	}
	return p[:len(p)-pad], nil
}

// onField takes a field of c.blk from the HPACK decoder. Once a field is
// malformed or over the size left, the decoder emits no more of the
// block (but still decodes it, for its table).
func (c *h2Conn) onField(f hpack.HeaderField) {
	b := &c.blk
	if b.invalid = b.fieldError(f); b.invalid != nil {
		c.hdec.SetEmitEnabled(false)
		return
	}
	size, remain := f.Size(), &b.remain
	if f.Name == "trailer" {
		// As x/net: 32 bytes of overhead per name listed.
		n := strings.Count(f.Value, ",") + 1
		size, remain = uint32(len(f.Value)-n+1)+uint32(n)*hpack.HeaderField{}.Size(), &b.trailerRemain
	}
	if size > *remain {
		c.hdec.SetEmitEnabled(false)
		b.truncated = true
		b.remain, b.trailerRemain = 0, 0
		return
	}
	*remain -= size
	if f.IsPseudo() {
		b.nPseudo++
	}
	b.fields = append(b.fields, f)
}

// fieldError says what is wrong with field f of b, in x/net's words: a
// pseudo-header field after a regular one, a name that is not a lower-case
// token, a value with control characters. Never the value itself: it may
// be a secret.
func (b *h2HeaderBlock) fieldError(f hpack.HeaderField) error {
	if f.IsPseudo() {
		if b.sawRegular {
			return errH2PseudoAfterRegular
		}
	} else {
		b.sawRegular = true
		if !httpguts.ValidHeaderFieldName(f.Name) || strings.ContainsFunc(f.Name, unicode.IsUpper) {
			return fmt.Errorf("invalid header field name %q", f.Name)
		}
	}
	if !httpguts.ValidHeaderFieldValue(f.Value) {
		return fmt.Errorf("invalid header field value for %q", f.Name)
	}
	return nil
}

// check returns the stream error of a malformed block: a malformed field,
// or pseudo-header fields x/net does not take (unknown, repeated, a
// request's with a response's). What :status says is onHeaders' concern.
func (b *h2HeaderBlock) check() error {
	err := b.invalid
	if err == nil {
		err = b.checkPseudos()
	}
	if err != nil {
		return http2.StreamError{StreamID: b.streamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	return nil
}

func (b *h2HeaderBlock) checkPseudos() error {
	var isRequest, isResponse bool
	pseudo := b.fields[:b.nPseudo]
	for i, f := range pseudo {
		switch f.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			isRequest = true
		case ":status":
			isResponse = true
		default:
			return fmt.Errorf("invalid pseudo-header %q", f.Name)
		}
		for _, g := range pseudo[:i] {
			if g.Name == f.Name {
				return fmt.Errorf("duplicate pseudo-header %q", f.Name)
			}
		}
	}
	if isRequest && isResponse {
		return errH2MixedPseudo
	}
	return nil
}

// status returns the value of :status, "" if there is none.
func (b *h2HeaderBlock) status() string {
	for _, f := range b.fields[:b.nPseudo] {
		if f.Name == ":status" {
			return f.Value
		}
	}
	return ""
}
