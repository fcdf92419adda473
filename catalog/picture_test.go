package catalog

import (
	"testing"
	"time"

	"github.com/walstore/walstore/wal"
)

// The time axis spans what is drawn: a quiet archive's WAL is not pushed
// into the left of the chart by "now", and a history file that outlived
// the WAL retention removed does not stretch it to the left.
func TestPictureAxisSpansTheData(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	h := Histories{1: nil, 2: {{TLI: 1, SwitchPoint: 0x3000000}}}
	inv := inventory(h, map[uint32][2]uint64{2: {3, 6}})
	for i := range inv.Files {
		inv.Files[i].Info.ModTime = t0.Add(time.Duration(i) * time.Minute)
		inv.byName[inv.Files[i].Name] = inv.Files[i]
	}
	old := File{Name: wal.Name{Kind: wal.History, TLI: 2}}
	old.Info.ModTime = t0.Add(-30 * 24 * time.Hour) // the fork, long before retention's cut
	inv.Files = append(inv.Files, old)
	inv.byName[old.Name] = old
	b := backup("b1", 2, "0/3000028")
	b.StartTime, b.StopTime = t0.Add(-time.Minute), t0.Add(30*time.Second)
	inv.Backups.Complete = append(inv.Backups.Complete, b)

	p := Draw(inv, t0.Add(24*time.Hour)) // a day of quiet
	if !p.From.Time.Equal(b.StartTime) || !p.To.Time.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("axis %s .. %s, want the backup's start %s .. the newest segment's %s", p.From.Time, p.To.Time, b.StartTime, t0.Add(3*time.Minute))
	}
	if len(p.WALPerHour) != 48 {
		t.Fatalf("%d hours of WAL per hour", len(p.WALPerHour))
	}

	// Nothing but one segment: a minute either side.
	one := inventory(Histories{1: nil}, map[uint32][2]uint64{1: {1, 1}})
	one.Files[0].Info.ModTime = t0
	one.byName[one.Files[0].Name] = one.Files[0]
	p = Draw(one, t0.Add(time.Hour))
	if got := p.To.Time.Sub(p.From.Time); got != 2*time.Minute {
		t.Fatalf("one segment: axis spans %s", got)
	}
	if p = Draw(inventory(Histories{}, nil), t0); !p.From.Time.IsZero() || !p.To.Time.IsZero() {
		t.Fatalf("empty archive: axis %s .. %s", p.From.Time, p.To.Time)
	}
}
