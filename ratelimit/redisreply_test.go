package ratelimit

import (
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/config"
)

func TestParseReply_ReadsTheScriptsReplyAndRejectsAMalformedOne(t *testing.T) {
	got, err := parseReply("1732630000123 1 7 28877166 0 -1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got.NowMS != 1732630000123 || !got.Admitted || len(got.Counts) != 2 ||
		got.Counts[0] != (count{Used: 7, Oldest: 28877166}) || got.Counts[1] != (count{Used: 0, Oldest: -1}) {
		t.Fatalf("parsed %+v", got)
	}
	for _, bad := range []string{"", "1 1 7", "1 1 7 8 9", "1 1 x 8", "1  1 7 8"} {
		if _, err := parseReply(bad, 1); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestWindowArgCache_IsBoundedAndBoxesTheWindowsNumbers(t *testing.T) {
	var c windowArgCache
	for i := range 3 * maxWindowArgs {
		w := newWindow(config.Window{Limit: int64(i + 1), Period: config.Duration(time.Minute)})
		a := c.get(w)
		if a[0] != w.SubMS || a[1] != w.PeriodMS || a[2] != w.Limit || a[3] != w.TTLMS() {
			t.Fatalf("window %+v: args %v", w, *a)
		}
		if again := c.get(w); i < maxWindowArgs && again != a {
			t.Fatalf("window %+v: boxed again although cached", w)
		}
	}
	if n := len(*c.m.Load()); n != maxWindowArgs {
		t.Fatalf("%d windows cached, bound %d", n, maxWindowArgs)
	}
}
