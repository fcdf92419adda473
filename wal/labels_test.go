package wal

import (
	"errors"
	"fmt"
	"testing"

	"github.com/walstore/walstore/base/errkind"
)

const label15 = `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-11-24 06:00:00 UTC
LABEL: pg_basebackup base backup
START TIMELINE: 1
STOP TIME: 2026-11-24 06:00:01 UTC
STOP TIMELINE: 1
`

func TestParseBackupLabel(t *testing.T) {
	l, err := ParseBackupLabel([]byte(label15))
	if err != nil {
		t.Fatal(err)
	}
	if l.StartLSN != 0x2000028 || l.StopLSN != 0x2000100 || l.StartTLI != 1 || l.StartWAL.String() != "000000010000000000000002" || l.Label != "pg_basebackup base backup" || l.StopTime.IsZero() {
		t.Fatalf("parsed %+v", l)
	}
	name, _ := ParseName("000000010000000000000002.00000028.backup")
	if err := CheckBackupFile(name, l); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"000000010000000000000003.00000028.backup", "000000010000000000000002.00000029.backup", "000000020000000000000002.00000028.backup"} {
		n, _ := ParseName(bad)
		if err := CheckBackupFile(n, l); err == nil {
			t.Errorf("%s accepted for a label starting at 0/2000028", bad)
		}
	}
	for name, text := range map[string]string{
		"garbage":        "hello world\n",
		"no start":       "CHECKPOINT LOCATION: 0/2000060\n",
		"bad lsn":        "START WAL LOCATION: zz (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/1\n",
		"bad file":       "START WAL LOCATION: 0/1 (file ../../etc)\nCHECKPOINT LOCATION: 0/1\n",
		"tli mismatch":   "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/1\nSTART TIMELINE: 2\n",
		"stop < start":   "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTOP WAL LOCATION: 0/1000000 (file 000000010000000000000001)\nCHECKPOINT LOCATION: 0/1\n",
		"bad start time": "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/1\nSTART TIME: yesterday\n",
	} {
		if _, err := ParseBackupLabel([]byte(text)); !errors.Is(err, errkind.ErrInvalid) {
			t.Errorf("%s: %v, want errkind.ErrInvalid", name, err)
		}
	}
}

func TestParseHistory(t *testing.T) {
	h, err := ParseHistory(3, []byte("1\t0/3000000\tno recovery target specified\n\n2\t0/5000000\tbefore 2026-11-24 06:00:00+00\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[0].TLI != 1 || h[1].SwitchPoint != 0x5000000 {
		t.Fatalf("%+v", h)
	}
	if TimelineAt(3, h, 0x2000000) != 1 || TimelineAt(3, h, 0x4000000) != 2 || TimelineAt(3, h, 0x6000000) != 3 {
		t.Error("TimelineAt")
	}
	for name, text := range map[string]string{
		"empty":         "",
		"parent >= tli": "3\t0/3000000\tx\n",
		"parent 0":      "0\t0/3000000\tx\n",
		"bad lsn":       "1\tnope\tx\n",
		"out of order":  "2\t0/5000000\tx\n1\t0/6000000\tx\n",
		"one field":     "1\n",
		"tli repeated":  "1\t0/5000000\tx\n1\t0/6000000\tx\n",
		"no slash":      "1\t5000000\tx\n",
		"lsn overflow":  "1\t100000000/0\tx\n",
	} {
		if _, err := ParseHistory(3, []byte(text)); !errors.Is(err, errkind.ErrInvalid) {
			t.Errorf("%s: %v, want errkind.ErrInvalid", name, err)
		}
	}
}

// The history PostgreSQL 15 wrote for a second point-in-time restore of
// one backup to a time before an existing fork (shared/MEASURED.md):
// timeline 2 forked from 1 at 0/C000000, timeline 3 from "2" at
// 0/80045A0, below that. PostgreSQL accepts it; so must walstore, and
// read it as PostgreSQL does: timeline 3 holds from 0/80045A0, timeline 1
// below, timeline 2 nothing.
func TestParseHistorySecondRestoreBeforeAFork(t *testing.T) {
	text := "1\t0/C000000\tno recovery target specified\n\n2\t0/80045A0\tbefore 2026-12-07 10:21:11.181319+00\n"
	h, err := ParseHistory(3, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[1].TLI != 2 || h[1].SwitchPoint != 0x80045A0 || h[1].Reason != "before 2026-12-07 10:21:11.181319+00" {
		t.Fatalf("%+v", h)
	}
	want := []Span{{TLI: 1, Begin: 0, End: 0x80045A0}, {TLI: 3, Begin: 0x80045A0}}
	if got := EffectiveLineage(3, h); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lineage %+v, want %+v", got, want)
	}
	for lsn, tli := range map[LSN]uint32{0x1000000: 1, 0x80045A0 - 1: 1, 0x80045A0: 3, 0xB000000: 3, 0xC000000: 3, 0xD000000: 3} {
		if got := TimelineAt(3, h, lsn); got != tli {
			t.Errorf("TimelineAt(%s) = %d, want %d", lsn, got, tli)
		}
	}
	// The same file, as sscanf reads it: spaces instead of tabs, comments,
	// a 0x prefix, lower case, CRLF.
	loose := "# comment\r\n  1 0/c000000 x\r\n\t# another\n2\t0x0/0x80045a0\r\n"
	h2, err := ParseHistory(3, []byte(loose))
	if err != nil || len(h2) != 2 || h2[0].SwitchPoint != 0xC000000 || h2[1].SwitchPoint != 0x80045A0 {
		t.Fatalf("loose: %+v %v", h2, err)
	}
}
