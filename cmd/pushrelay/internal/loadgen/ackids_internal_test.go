package loadgen

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

func TestCompareIDs(t *testing.T) {
	tests := []struct {
		name      string
		accepted  []string
		delivered map[string]int
		want      IDAccounting
		wantErr   bool
	}{
		{"each once", []string{"a", "b"}, map[string]int{"a": 1, "b": 1},
			IDAccounting{Accepted: 2, Delivered: 2, Distinct: 2}, false},
		{"nothing", nil, nil, IDAccounting{}, false},
		// The counts agree (2 and 2); the ids do not.
		{"one lost, one twice", []string{"a", "b"}, map[string]int{"a": 2},
			IDAccounting{Accepted: 2, Delivered: 2, Distinct: 1, Lost: 1, Duplicates: 1, LostIDs: []string{"b"}, DuplicateIDs: []string{"a"}}, true},
		{"stored though unanswered", []string{"a"}, map[string]int{"a": 1, "x": 1},
			IDAccounting{Accepted: 1, Delivered: 2, Distinct: 2, Unanswered: 1}, false},
		{"unanswered, twice", []string{"a"}, map[string]int{"a": 1, "x": 2},
			IDAccounting{Accepted: 1, Delivered: 3, Distinct: 2, Duplicates: 1, DuplicateIDs: []string{"x"}}, true},
		{"accepted twice counts once", []string{"a", "a"}, map[string]int{"a": 1},
			IDAccounting{Accepted: 1, Delivered: 1, Distinct: 1}, false},
		{"all lost, a few named", []string{"e", "d", "c", "b", "a"}, map[string]int{"a": 0},
			IDAccounting{Accepted: 5, Lost: 5, LostIDs: []string{"a", "b", "c"}}, true},
	}
	for _, tc := range tests {
		got := CompareIDs(tc.accepted, tc.delivered)
		if got.String() != tc.want.String() || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: CompareIDs = %+v, want %+v", tc.name, got, tc.want)
		}
		if err := got.Err(); (err != nil) != tc.wantErr {
			t.Errorf("%s: Err() = %v, want an error: %t", tc.name, err, tc.wantErr)
		}
	}
	line := CompareIDs([]string{"a", "b"}, map[string]int{"a": 2, "x": 1}).String()
	want := "by ack_id: accepted OK for live tokens 2, delivered upstream 3 pushes of 2 notifications: lost 1, duplicates 1, stored though unanswered 1 (lost e.g. b) (duplicated e.g. a)"
	if line != want {
		t.Errorf("String() = %q\nwant       %q", line, want)
	}
}

func TestIDRangesRoundTrip(t *testing.T) {
	run := map[string]int{}
	for i := range int64(1000) {
		if i != 500 { // a gap
			run[ackID(1764000000123, i)] = 1
		}
	}
	run[ackID(1764000000123, 2000)] = 2 // twice
	run[ackID(1764000000999, 7)] = 1    // another run
	tests := []struct {
		name      string
		delivered map[string]int
		lines     int
	}{
		{"empty", map[string]int{}, 0},
		{"a run with a gap, a duplicate and another run", run, 4},
		{"no digits, odd characters", map[string]int{"": 1, "x": 3, "a b\n\"c\"": 1, "9": 1, "10": 1, "x09": 1, "x10": 1}, 6},
		{"more digits than a range counts in", map[string]int{"1234567890123456789012": 1, "1234567890123456789013": 1}, 1},
		{"digits of another width", map[string]int{"a9": 1, "a10": 1, "a098": 1, "a099": 1}, 3},
	}
	for _, tc := range tests {
		var b strings.Builder
		if err := writeIDRanges(&b, tc.delivered); err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(b.String(), "\n"); got != tc.lines {
			t.Errorf("%s: %d lines, want %d:\n%s", tc.name, got, tc.lines, b.String())
		}
		got, err := readIDRanges(strings.NewReader(b.String()))
		if err != nil || !maps.Equal(got, tc.delivered) {
			t.Errorf("%s: read back %v, %v; want %v", tc.name, got, err, tc.delivered)
		}
	}
	for _, bad := range []string{`x 1 1`, `"x" 1`, `"x" 0 1`, `"x" 2 1`, `"a8" 3 1`, `"x`} {
		if _, err := readIDRanges(strings.NewReader(bad + "\n")); err == nil {
			t.Errorf("readIDRanges(%q) took it", bad)
		}
	}
}
