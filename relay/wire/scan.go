package wire

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// scanFlat is UnmarshalJSON's fast path, for the bodies Mattermost sends: one
// flat object whose names and string values hold no escape, no control
// character and no invalid UTF-8, and whose values are strings, numbers,
// true, false or null, each of its field's type (any for an unknown name).
// Such a body it decodes into n as encoding/json would, and reports true.
// On anything else (an escape, a nested value, a type error, a number that
// is no int for an int field, malformed JSON, the end of the input) it
// reports false and leaves n as it was: the general path then decodes the
// body from scratch and has the error or the odd case right.
//
// The strings kept are slices of *body, a copy of data made at the first
// non-empty one; *body is set even when scanFlat gives up, for the general
// path to reuse.
//
// The readers below take data and the index to read at, and return the
// index after what they read: i stays in a register, which a scanner
// struct's field would not.
func scanFlat(data []byte, n *Notification, body *string) bool {
	m := *n // n is left alone until the whole body is known to be in the subset
	i, ok := delim(data, 0, '{')
	if !ok {
		return false
	}
	if _, ok := delim(data, i, '}'); ok {
		return true // {}: nothing to set
	}
	for {
		var start, end int
		var escaped bool
		if start, end, i, escaped, ok = str(data, i); !ok || escaped {
			return false // an escaped name is rare: the general path has it
		}
		if i, ok = delim(data, i, ':'); !ok {
			return false
		}
		// lookup, by hand: a call less per name
		tag, sp, ip, bp := m.field(data[start:end])
		if tag == "" {
			_, sp, ip, bp = m.fold(data[start:end])
		}
		i = space(data, i)
		switch c := at(data, i); {
		case c == 'n':
			i, ok = literal(data, i, "null") // leaves the field alone
		case sp != nil:
			var escaped bool
			if start, end, i, escaped, ok = str(data, i); ok && escaped {
				*sp = unescape(data[start-1 : end+1])
			} else if ok {
				*sp = keep(data, body, start, end)
			}
		case ip != nil:
			*ip, i, ok = integer(data, i)
		case bp != nil && c == 't':
			*bp = true
			i, ok = literal(data, i, "true")
		case bp != nil && c == 'f':
			*bp = false
			i, ok = literal(data, i, "false")
		case bp != nil:
			ok = false
		default: // an unknown name: any value but an object or array
			i, ok = scalar(data, i)
		}
		if !ok {
			return false
		}
		i = space(data, i)
		switch at(data, i) {
		case ',':
			i++
		case '}':
			// What follows the object is ignored, as json.Decoder ignores it.
			*n = m
			return true
		default:
			return false
		}
	}
}

// keep returns data[start:end] as a string: a slice of *body, the one copy
// of data, made here the first time. An empty string needs no copy.
func keep(data []byte, body *string, start, end int) string {
	if start == end {
		return ""
	}
	if *body == "" {
		*body = string(data)
	}
	return (*body)[start:end]
}

// at returns data[i], or 0 past the end (a NUL byte is no JSON token
// either).
func at(data []byte, i int) byte {
	if i < len(data) {
		return data[i]
	}
	return 0
}

// space returns the index of the first byte from i on that is no JSON
// whitespace.
func space(data []byte, i int) int {
	for ; i < len(data); i++ {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return i
		}
	}
	return i
}

// delim reads the byte c after any whitespace.
func delim(data []byte, i int, c byte) (int, bool) {
	i = space(data, i)
	return i + 1, at(data, i) == c
}

// literal reads lit (true, false or null) at i.
func literal(data []byte, i int, lit string) (int, bool) {
	end := i + len(lit)
	return end, end <= len(data) && string(data[i:end]) == lit
}

// str reads a string after any whitespace: it returns where its content
// is in data, the index after it, and whether it holds escapes (then its
// content is to be unescaped, see unescape). ok is false when it holds a
// control character, an invalid escape, or (without escapes) invalid
// UTF-8. Strings are most of a body, so it looks at eight bytes at a time
// for the closing quote or a backslash.
func str(data []byte, i int) (start, end, next int, escaped, ok bool) {
	const highs = 0x8080808080808080
	if start, ok = delim(data, i, '"'); !ok {
		return 0, 0, 0, false, false
	}
	var seen uint64 // the OR of the bytes passed: a top bit set for non-ASCII
	for end = start; ; {
		var run uint64
		end, run = plainRun(data, end)
		seen |= run
		switch at(data, end) {
		case '"':
			return start, end, end + 1, escaped, escaped || seen&highs == 0 || utf8.Valid(data[start:end])
		case '\\':
			n := escapeLen(data, end)
			if n == 0 {
				return 0, 0, 0, false, false
			}
			escaped = true
			end += n
		default:
			return 0, 0, 0, false, false // a control character, or no end
		}
	}
}

// plainRun returns the index of the first quote, backslash or control
// character of data from i on (len(data) if none), and the OR of the bytes
// before it.
func plainRun(data []byte, i int) (end int, seen uint64) {
	for end = i; end+8 <= len(data); end += 8 {
		x := binary.LittleEndian.Uint64(data[end:])
		if m := special(x); m != 0 {
			k := bits.TrailingZeros64(m) &^ 7 // the bit offset of the first special byte
			return end + k/8, seen | x&(1<<k-1)
		}
		seen |= x
	}
	end, tail := byteRun(data, end)
	return end, seen | tail
}

// escapeLen is the length of the valid JSON escape at data[i] (a
// backslash), or 0: \" \\ \/ \b \f \n \r \t, or \u and four hex digits.
func escapeLen(data []byte, i int) int {
	switch at(data, i+1) {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2
	case 'u':
		if i+6 > len(data) {
			return 0
		}
		for _, c := range data[i+2 : i+6] {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return 0
			}
		}
		return 6
	}
	return 0
}

// unescape decodes the string literal lit, which str found valid and
// holding escapes, as encoding/json does (lone surrogates and invalid
// UTF-8 become U+FFFD): the one allocation of its own such a string costs.
func unescape(lit []byte) string {
	var s string
	json.Unmarshal(lit, &s) // a valid string literal: it cannot fail
	return s
}

// byteRun is str's loop for the last few bytes of data, one at a time.
func byteRun(data []byte, i int) (end int, seen uint64) {
	for ; i < len(data); i++ {
		if c := data[i]; c == '"' || c == '\\' || c < ' ' {
			break
		}
		seen |= uint64(data[i])
	}
	return i, seen
}

// special marks with its top bit each of the 8 bytes of x (the first byte
// lowest) that is a quote, a backslash or a control character. Each term is
// the "has a zero byte" test (v-0x01)&^v, on x^'"', on x^'\\', and, for the
// bytes below 0x20, on x-0x20 (where &^x drops the bytes >= 0x80, no JSON
// syntax). A borrow can mark a byte after a marked one, never before: the
// first mark is right, and str uses only that one.
func special(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q, b := x^(ones*'"'), x^(ones*'\\')
	return ((x-ones*' ')&^x | (q-ones)&^q | (b-ones)&^b) & highs
}

// integer reads, at i, a JSON number that is an int: no fraction, no
// exponent (encoding/json has those as type errors), in range.
func integer(data []byte, i int) (v, next int, ok bool) {
	if next, ok = intPart(data, i); !ok {
		return 0, 0, false
	}
	// The string does not escape: up to 32 bytes (any int), no allocation.
	v64, err := strconv.ParseInt(string(data[i:next]), 10, 0)
	return int(v64), next, err == nil
}

// intPart reads the integer part of a JSON number at i:
// -?(0|[1-9][0-9]*).
func intPart(data []byte, i int) (int, bool) {
	if at(data, i) == '-' {
		i++
	}
	if at(data, i) == '0' {
		return i + 1, true
	}
	return digits(data, i)
}

// digits reads one or more decimal digits at i.
func digits(data []byte, i int) (int, bool) {
	start := i
	for i < len(data) && '0' <= data[i] && data[i] <= '9' {
		i++
	}
	return i, i > start
}

// number reads a JSON number at i: an integer part, then an optional
// fraction (.[0-9]+) and exponent ([eE][+-]?[0-9]+).
func number(data []byte, i int) (int, bool) {
	i, ok := intPart(data, i)
	if ok && at(data, i) == '.' {
		i, ok = digits(data, i+1)
	}
	if c := at(data, i); ok && (c == 'e' || c == 'E') {
		if c := at(data, i+1); c == '+' || c == '-' {
			i++
		}
		i, ok = digits(data, i+1)
	}
	return i, ok
}

// scalar reads at i a value that is no object or array: the value of an
// unknown name.
func scalar(data []byte, i int) (int, bool) {
	switch at(data, i) {
	case '"':
		_, _, next, _, ok := str(data, i)
		return next, ok
	case 't':
		return literal(data, i, "true")
	case 'f':
		return literal(data, i, "false")
	case 'n':
		return literal(data, i, "null")
	}
	return number(data, i)
}
