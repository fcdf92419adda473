package catalog

import (
	"testing"

	"github.com/walstore/walstore/wal"
)

const seg = 16 << 20

// Timeline 2 forked from 1 at 0/5800000 (inside segment 5); timeline 3
// forked from 2 at 0/8000000 (a segment boundary); timeline 4 forked from
// 1 at 0/3000000 (a sibling branch).
var hs = Histories{
	1: nil,
	2: {{TLI: 1, SwitchPoint: 0x5800000}},
	3: {{TLI: 1, SwitchPoint: 0x5800000}, {TLI: 2, SwitchPoint: 0x8000000}},
	4: {{TLI: 1, SwitchPoint: 0x3000000}},
}

func TestTimelineFor(t *testing.T) {
	for _, tc := range []struct {
		target uint32
		seg    uint64
		want   uint32
	}{
		{1, 9, 1},
		{2, 4, 1}, {2, 5, 2}, {2, 6, 2}, // the switch segment comes from the new timeline
		{3, 4, 1}, {3, 5, 2}, {3, 7, 2}, {3, 8, 3},
		{4, 2, 1}, {4, 3, 4},
	} {
		if got := hs.TimelineFor(tc.target, tc.seg, seg); got != tc.want {
			t.Errorf("TimelineFor(%d, seg %d) = %d, want %d", tc.target, tc.seg, got, tc.want)
		}
	}
}

func TestNewestAndLineage(t *testing.T) {
	for _, tc := range []struct {
		tli  uint32
		lsn  wal.LSN
		want uint32
	}{
		{1, 0x2000000, 4}, // before every fork: the newest timeline overall
		{1, 0x4000000, 3}, // after timeline 4 forked away, before 2 did
		{1, 0x6000000, 1}, // timeline 1 after both forks: only itself
		{2, 0x6000000, 3},
		{3, 0x9000000, 3},
	} {
		if got := hs.Newest(tc.tli, tc.lsn); got != tc.want {
			t.Errorf("Newest(%d, %s) = %d, want %d", tc.tli, tc.lsn, got, tc.want)
		}
	}
	if err := hs.Check(); err != nil {
		t.Fatal(err)
	}
	bad := Histories{1: nil, 3: {{TLI: 1, SwitchPoint: 5}, {TLI: 2, SwitchPoint: 9}}, 2: {{TLI: 1, SwitchPoint: 6}}}
	if bad.Check() == nil {
		t.Fatal("disagreeing histories accepted")
	}
}
