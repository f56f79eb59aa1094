package loadgen

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// IDAccounting compares, notification by notification (by ack_id), the
// ones the relay answered OK with the pushes the look-alikes answered 200.
// Unlike Accounting's counts it tells a notification delivered twice and
// another never delivered from two delivered once, and a notification
// the relay stored but could not answer (killed first) from a duplicate.
type IDAccounting struct {
	// Accepted is how many distinct notifications for live device tokens
	// the relay answered OK; Delivered how many pushes the look-alikes
	// answered 200, of how many distinct notifications (Distinct).
	Accepted, Delivered, Distinct int64
	// Lost counts the accepted notifications never delivered; Duplicates
	// the notifications delivered more than once, accepted or not.
	Lost, Duplicates int64
	// Unanswered counts the notifications delivered once that the relay
	// never answered OK: stored though unanswered, as when it stops
	// between its spool's write and its answer. Allowed, not an error.
	Unanswered int64
	// LostIDs and DuplicateIDs hold a few of each, to look for in the
	// relay's logs.
	LostIDs, DuplicateIDs []string
}

// exampleIDs is how many lost or duplicated ack ids IDAccounting keeps.
const exampleIDs = 3

// CompareIDs accounts for the notifications whose ack ids the relay
// answered OK (accepted) against how many times the look-alikes answered
// 200 to each ack id (delivered, as Rig.DeliveredIDs returns it).
func CompareIDs(accepted []string, delivered map[string]int) IDAccounting {
	var a IDAccounting
	ok := make(map[string]struct{}, len(accepted))
	for _, id := range accepted {
		ok[id] = struct{}{}
	}
	a.Accepted = int64(len(ok))
	for _, id := range sortedIDs(ok) {
		if delivered[id] == 0 {
			a.Lost++
			if len(a.LostIDs) < exampleIDs {
				a.LostIDs = append(a.LostIDs, id)
			}
		}
	}
	for _, id := range sortedIDs(delivered) {
		n := delivered[id]
		if n <= 0 {
			continue
		}
		a.Delivered += int64(n)
		a.Distinct++
		_, answered := ok[id]
		switch {
		case n > 1:
			a.Duplicates++
			if len(a.DuplicateIDs) < exampleIDs {
				a.DuplicateIDs = append(a.DuplicateIDs, id)
			}
		case !answered:
			a.Unanswered++
		}
	}
	return a
}

// sortedIDs returns m's keys in order, so that the examples are the same
// from one report to the next.
func sortedIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Err is not nil when a notification answered OK was lost, or one was
// delivered more than once.
func (a IDAccounting) Err() error {
	if a.Lost > 0 || a.Duplicates > 0 {
		return fmt.Errorf("delivery by ack_id: %s", a)
	}
	return nil
}

// String is the accounting for a person.
func (a IDAccounting) String() string {
	s := fmt.Sprintf("by ack_id: accepted OK for live tokens %d, delivered upstream %d pushes of %d notifications: lost %d, duplicates %d, stored though unanswered %d",
		a.Accepted, a.Delivered, a.Distinct, a.Lost, a.Duplicates, a.Unanswered)
	if len(a.LostIDs) > 0 {
		s += " (lost e.g. " + strings.Join(a.LostIDs, ", ") + ")"
	}
	if len(a.DuplicateIDs) > 0 {
		s += " (duplicated e.g. " + strings.Join(a.DuplicateIDs, ", ") + ")"
	}
	return s
}

// The look-alikes serve their table of deliveries by ack id as ranges,
// one a line: a quoted ack id, how many ids the range holds, and how many
// times each was delivered. The ids of a range are the first one with its
// trailing decimal digits (at most 18 of them, their width kept) counted
// up: the load generator numbers its notifications, so a run's
// notifications delivered once are one line, not one each.

// maxRangeDigits is how many trailing digits of an id a range counts in
// (10^18 fits an int64).
const maxRangeDigits = 18

// splitID cuts id into a prefix and its trailing digits (at most
// maxRangeDigits), and their value; digits is 0 when it ends in none.
func splitID(id string) (prefix string, num int64, digits int) {
	i := len(id)
	for i > 0 && len(id)-i < maxRangeDigits && id[i-1] >= '0' && id[i-1] <= '9' {
		i--
	}
	if i == len(id) {
		return id, 0, 0
	}
	num, _ = strconv.ParseInt(id[i:], 10, 64)
	return id[:i], num, len(id) - i
}

// idRange is a line of the table: n ids from firstID on (prefix, then
// first in digits digits), each delivered times times.
type idRange struct {
	firstID   string
	prefix    string
	first     int64
	digits, n int
	times     int
}

// writeIDRanges writes the table of deliveries by ack id (id: times) as
// ranges.
func writeIDRanges(w io.Writer, delivered map[string]int) error {
	bw := bufio.NewWriter(w)
	var cur *idRange
	flush := func() {
		if cur != nil {
			fmt.Fprintf(bw, "%s %d %d\n", strconv.Quote(cur.firstID), cur.n, cur.times)
		}
	}
	for _, id := range sortedIDs(delivered) {
		prefix, num, digits := splitID(id)
		times := delivered[id]
		if cur != nil && digits > 0 && prefix == cur.prefix && digits == cur.digits && times == cur.times && num == cur.first+int64(cur.n) {
			cur.n++
			continue
		}
		flush()
		cur = &idRange{prefix: prefix, first: num, digits: digits, n: 1, times: times, firstID: id}
	}
	flush()
	return bw.Flush()
}

// readIDRanges reads what writeIDRanges wrote.
func readIDRanges(r io.Reader) (map[string]int, error) {
	out := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		bad := func(why string) error { return fmt.Errorf("deliveries by ack id, line %d %q: %s", line, text, why) }
		cut := strings.LastIndexByte(text, '"')
		if !strings.HasPrefix(text, `"`) || cut <= 0 {
			return nil, bad("no quoted id")
		}
		first, err := strconv.Unquote(text[:cut+1])
		if err != nil {
			return nil, bad("no quoted id")
		}
		var n, times int
		if _, err := fmt.Sscan(text[cut+1:], &n, &times); err != nil || n <= 0 || times <= 0 {
			return nil, bad("want a count of ids and of deliveries after the id")
		}
		prefix, num, digits := splitID(first)
		if n > 1 && (digits == 0 || len(strconv.FormatInt(num+int64(n)-1, 10)) > digits) {
			return nil, bad("the range does not fit the id's digits")
		}
		for k := range int64(n) {
			id := first
			if k > 0 {
				id = prefix + fmt.Sprintf("%0*d", digits, num+k)
			}
			out[id] += times
		}
	}
	return out, sc.Err()
}
