package jsonobject_test

import (
	"encoding/json"
	"fmt"
	"testing"

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
			o.Pair("map key \"1\"", "v")
		}, `{"s":"a \"quoted\" \\ <tag> é","kept":"x","b":true,"i":-3,"r":[1,2],"map key \"1\"":"v"}`},
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
