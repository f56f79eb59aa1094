package jsonobject_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/pushrelay/pushrelay/providers/jsonobject"
)

func TestObjectIsValidJSON(t *testing.T) {
	for _, tt := range []struct {
		name  string
		write func(*jsonobject.Object)
		want  string
	}{
		{"empty", func(*jsonobject.Object) {}, `{}`},
		{"members", func(o *jsonobject.Object) {
			o.String("s", `a "quoted" \ <tag> é`)
			o.Optional("skipped", "")
			o.Optional("kept", "x")
			o.Bool("b", true)
			o.Int("i", -3)
			o.Raw("r", []byte(`[1,2]`))
		}, `{"s":"a \"quoted\" \\ <tag> é","kept":"x","b":true,"i":-3,"r":[1,2]}`},
		{"nested", func(o *jsonobject.Object) {
			a := o.Object("a")
			a.String("x", "1")
			empty := a.Object("e")
			a.End(empty)
			o.End(a)
			o.String("after", "2")
		}, `{"a":{"x":"1","e":{}},"after":"2"}`},
		{"invalid UTF-8 is replaced", func(o *jsonobject.Object) { o.String("s", "a\xffb") }, `{"s":"a\ufffdb"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := jsonobject.Open([]byte("prefix:"))
			tt.write(&o)
			out := o.Close()
			if string(out[:7]) != "prefix:" {
				t.Fatalf("the buffer's start was lost: %q", out)
			}
			var got, want any
			if err := json.Unmarshal(out[7:], &got); err != nil {
				t.Fatalf("%s is not JSON: %v", out[7:], err)
			}
			json.Unmarshal([]byte(tt.want), &want)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %s, want %s", out[7:], tt.want)
			}
		})
	}
}

// checkQuote checks that String writes v exactly as jsontext.AppendQuote
// quotes it: the fast path for strings that need no escape must not change
// a byte.
func checkQuote(t *testing.T, v string) {
	t.Helper()
	o := jsonobject.Open(nil)
	o.String("k", v)
	got := o.Close()
	want, _ := jsontext.AppendQuote([]byte(`{"k":`), v)
	want = append(want, '}')
	if !bytes.Equal(got, want) {
		t.Errorf("String(%q) wrote %q, jsontext.AppendQuote %q", v, got, want)
	}
}

// quoteSeeds are the strings at the edges of the fast path: every byte on
// its own, what AppendQuote could escape but does not without flags (DEL,
// HTML's <, > and &, U+2028 and U+2029), and broken UTF-8.
func quoteSeeds() []string {
	seeds := []string{
		"", "p7q2k3x9m1c8d4t5u2a6n0s1e0", "\x7f", "a\x7fb", "<b>&amp;</b>", "\u2028\u2029",
		"é", "\U0001F389 tada", "\ufffd", "a\xffb", "\xed\xa0\x80", "\xe2\x82", "\xf0\x9f\x8e",
		"\xc0\xaf", "\xf4\x90\x80\x80", "tab\tnew\nline", "\"quoted\" \\ back", "\x00\x1f\x20",
		strings.Repeat("x", 1000) + "\"", strings.Repeat("é", 100) + "\xff",
	}
	for c := range 256 {
		seeds = append(seeds, string([]byte{byte(c)}), "ab"+string([]byte{byte(c)})+"cd")
	}
	return seeds
}

func TestStringQuotesAsAppendQuote(t *testing.T) {
	for _, v := range quoteSeeds() {
		checkQuote(t, v)
	}
}

// FuzzString compares String with jsontext.AppendQuote for any string.
func FuzzString(f *testing.F) {
	for _, v := range quoteSeeds() {
		f.Add(v)
	}
	f.Fuzz(checkQuote)
}

func Example() {
	o := jsonobject.Open(nil)
	o.String("type", "message")
	aps := o.Object("aps")
	aps.Int("badge", 2)
	o.End(aps)
	o.Optional("root_id", "")
	fmt.Println(string(o.Close()))
	// Output: {"type":"message","aps":{"badge":2}}
}

// BenchmarkString appends one member per kind of value the providers send:
// ids, the text of a message, text with non-ASCII letters and emoji, and
// text that needs escaping.
func BenchmarkString(b *testing.B) {
	for _, bc := range []struct{ name, v string }{
		{"id", "p7q2k3x9m1c8d4t5u2a6n0s1e0"},
		{"text", "@all the release is out, notes in the channel :tada:"},
		{"unicode", "@all la version est publiée, notes dans le canal \U0001F389 "},
		{"escaped", "line one\nline \"two\"\ttabbed \\ done"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 256)
			b.ReportAllocs()
			for b.Loop() {
				o := jsonobject.Open(buf[:0])
				o.String("message", bc.v)
				buf = o.Close()
			}
		})
	}
}
