package wal

import (
	"errors"
	"testing"
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
		if _, err := ParseBackupLabel([]byte(text)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
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
		"backwards lsn": "1\t0/5000000\tx\n2\t0/4000000\tx\n",
		"one field":     "1\n",
	} {
		if _, err := ParseHistory(3, []byte(text)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}
