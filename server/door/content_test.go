package door

import (
	"errors"
	"testing"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
	"github.com/walstore/walstore/wal/waltest"
)

// A segment PostgreSQL could not replay to its end is BadWAL, held or
// streamed; a history file naming a parent the archive lacks is refused.
func TestContent(t *testing.T) {
	for _, limit := range []int64{64 << 20, 1 << 10} {
		f := newFixture(t, limit)
		n := waltest.Name("000000010000000000000002")
		key := archive.Layout{Archive: "main"}.WAL(n)
		raw := waltest.Segment(7, n, segSize)
		for i := segSize / 2; i < segSize; i++ {
			raw[i] = 0 // its WAL stops in the middle: an unfinished segment
		}
		var bw *BadWAL
		if _, err := f.put(key, f.envelope(key, 7, raw)); !errors.As(err, &bw) || f.stored(key) {
			t.Errorf("limit %d: unfinished segment: %v", limit, err)
		}
	}
	f := newFixture(t, 64<<20)
	if k, b := f.segment("000000010000000000000002"); true {
		if _, err := f.put(k, b); err != nil {
			t.Fatal(err)
		}
	}
	hk := archive.Layout{Archive: "main"}.WAL(wal.Name{Kind: wal.History, TLI: 3})
	hist := waltest.History(wal.HistoryEntry{TLI: 1, SwitchPoint: 0x2000000}, wal.HistoryEntry{TLI: 2, SwitchPoint: 0x2800000})
	if _, err := f.put(hk, f.envelope(hk, 7, hist)); !errors.Is(err, errkind.ErrInvalid) || f.stored(hk) {
		t.Errorf("a history whose parent 2 the archive lacks: %v", err)
	}
}
