package retention

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
)

const seg = 16 << 20

func name(s string) wal.Name {
	n, err := wal.ParseName(s)
	if err != nil {
		panic(err)
	}
	return n
}

func files(names ...string) []WALFile {
	var out []WALFile
	for _, s := range names {
		out = append(out, WALFile{Name: name(s), Key: "a/wal/" + s, Size: 1})
	}
	return out
}

func deleted(p Plan) string {
	var s []string
	for _, f := range p.DeleteWAL {
		s = append(s, f.Name.String())
	}
	return strings.Join(s, " ")
}

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func TestPlan(t *testing.T) {
	b := func(id string, hoursAgo int, tli uint32, lsn wal.LSN) Backup {
		return Backup{ID: id, StopTime: now.Add(-time.Duration(hoursAgo) * time.Hour), StartTLI: tli, StartLSN: lsn}
	}
	wal := files(
		"000000010000000000000001", "000000010000000000000002", "000000010000000000000002.00000028.backup",
		"000000010000000000000003", "000000010000000000000004", "000000010000000000000005.00000060.backup",
		"000000010000000000000005", "000000010000000000000006.partial",
		"00000002.history", "000000020000000000000006", "000000020000000000000007",
	)
	for _, tc := range []struct {
		name       string
		backups    []Backup
		policy     Policy
		keep, del  string
		keepFrom   string
		deletedWAL string
	}{
		{
			name:    "keep last 2 of 3: WAL before the second backup's start goes",
			backups: []Backup{b("b1", 30, 1, 0x2000028), b("b3", 1, 2, 0x6100000), b("b2", 10, 1, 0x5000060)},
			policy:  Policy{KeepLast: 2},
			keep:    "b2 b3", del: "b1", keepFrom: "000000010000000000000005",
			deletedWAL: "000000010000000000000001 000000010000000000000002 000000010000000000000002.00000028.backup 000000010000000000000003 000000010000000000000004",
		},
		{
			name:    "keep within keeps older ones too",
			backups: []Backup{b("b1", 30, 1, 0x2000028), b("b2", 10, 1, 0x5000060), b("b3", 1, 2, 0x6100000)},
			policy:  Policy{KeepLast: 1, KeepWithin: 48 * time.Hour},
			keep:    "b1 b2 b3", keepFrom: "000000010000000000000002",
			deletedWAL: "000000010000000000000001",
		},
		{
			name:    "recovery window: the newest backup from before the window stays, older ones go",
			backups: []Backup{b("b0", 25*24, 1, 0x1000028), b("b1", 20*24, 1, 0x2000028), b("b2", 10*24, 1, 0x5000060), b("b3", 24, 2, 0x6100000)},
			policy:  Policy{KeepLast: 1, KeepWithin: 14 * 24 * time.Hour},
			keep:    "b1 b2 b3", del: "b0", keepFrom: "000000010000000000000002",
			deletedWAL: "000000010000000000000001",
		},
		{
			name:    "only timeline 2 backups kept: everything before its start goes, history stays",
			backups: []Backup{b("b1", 30, 1, 0x2000028), b("b3", 1, 2, 0x6100000)},
			policy:  Policy{KeepLast: 1},
			keep:    "b3", del: "b1", keepFrom: "000000020000000000000006",
			deletedWAL: "000000010000000000000001 000000010000000000000002 000000010000000000000002.00000028.backup 000000010000000000000003 000000010000000000000004 000000010000000000000005 000000010000000000000005.00000060.backup",
		},
		{
			name:    "the last backup is never deleted",
			backups: []Backup{b("only", 1000, 1, 0x2000028)},
			policy:  Policy{KeepLast: 1},
			keep:    "only", keepFrom: "000000010000000000000002", deletedWAL: "000000010000000000000001",
		},
		{
			name:    "no backup: nothing is deleted",
			backups: nil,
			policy:  Policy{KeepLast: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := MakePlan(tc.backups, nil, wal, seg, tc.policy, now)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(p.Keep, " "); got != tc.keep {
				t.Errorf("keep %q, want %q", got, tc.keep)
			}
			if got := strings.Join(p.Delete, " "); got != tc.del {
				t.Errorf("delete %q, want %q", got, tc.del)
			}
			if tc.keepFrom != "" && p.KeepFrom.String() != tc.keepFrom {
				t.Errorf("keep from %s, want %s", p.KeepFrom, tc.keepFrom)
			}
			if got := deleted(p); got != tc.deletedWAL {
				t.Errorf("deleted WAL\n got %q\nwant %q", got, tc.deletedWAL)
			}
			if strings.Contains(deleted(p), "history") {
				t.Error("a history file was deleted")
			}
		})
	}
}

func TestPlanRefusesKeepLastZero(t *testing.T) {
	if _, err := MakePlan(nil, nil, nil, seg, Policy{KeepLast: 0}, now); !errors.Is(err, errkind.ErrInvalid) {
		t.Fatalf("keep-last 0: %v", err)
	}
}

func TestPlanDeletesOldIncompleteBackups(t *testing.T) {
	in := []Incomplete{{ID: "old", LastWrite: now.Add(-48 * time.Hour)}, {ID: "running", LastWrite: now.Add(-time.Minute)}}
	p, err := MakePlan(nil, in, nil, seg, Policy{KeepLast: 1}, now)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.DeleteIncomplete, " ") != "old" {
		t.Fatalf("incomplete deleted: %v", p.DeleteIncomplete)
	}
}
