package wal

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/walstore/walstore/base/errkind"
)

// MaxBackupLabelSize bounds a .backup file.
const MaxBackupLabelSize = 64 << 10

// BackupLabel is a parsed backup history file (.backup), the label
// pg_backup_stop archives: where a base backup's WAL starts and stops.
type BackupLabel struct {
	StartLSN   LSN
	StartWAL   Name // segment holding StartLSN
	StopLSN    LSN
	StopWAL    Name
	Checkpoint LSN
	StartTLI   uint32
	StopTLI    uint32
	Method     string
	From       string
	Label      string
	StartTime  time.Time
	StopTime   time.Time
}

// ParseBackupLabel parses the text of a .backup file (or of a backup_label,
// which lacks the STOP lines; then Stop fields stay zero).
func ParseBackupLabel(b []byte) (BackupLabel, error) {
	var l BackupLabel
	if len(b) > MaxBackupLabelSize {
		return l, fmt.Errorf("%w: backup label is %d bytes", errkind.ErrInvalid, len(b))
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	seen := map[string]bool{}
	for line := 1; sc.Scan(); line++ {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			return l, fmt.Errorf("%w: backup label line %d: want \"KEY: value\"", errkind.ErrInvalid, line)
		}
		seen[k] = true
		var err error
		switch k {
		case "START WAL LOCATION":
			l.StartLSN, l.StartWAL, err = parseWALLocation(v)
		case "STOP WAL LOCATION":
			l.StopLSN, l.StopWAL, err = parseWALLocation(v)
		case "CHECKPOINT LOCATION":
			l.Checkpoint, err = ParseLSN(v)
		case "START TIMELINE":
			l.StartTLI, err = parseTLI(v)
		case "STOP TIMELINE":
			l.StopTLI, err = parseTLI(v)
		case "BACKUP METHOD":
			l.Method = v
		case "BACKUP FROM":
			l.From = v
		case "LABEL":
			l.Label = v
		case "START TIME":
			l.StartTime, err = parsePGTime(v)
		case "STOP TIME":
			l.StopTime, err = parsePGTime(v)
		}
		if err != nil {
			return l, fmt.Errorf("backup label line %d (%s): %w", line, k, err)
		}
	}
	for _, k := range []string{"START WAL LOCATION", "CHECKPOINT LOCATION"} {
		if !seen[k] {
			return l, fmt.Errorf("%w: backup label has no %s", errkind.ErrInvalid, k)
		}
	}
	if l.StartTLI == 0 {
		l.StartTLI = l.StartWAL.TLI // labels before PostgreSQL 11 lack START TIMELINE
	}
	if l.StartWAL.TLI != l.StartTLI {
		return l, fmt.Errorf("%w: backup label: START TIMELINE %d but start file %s", errkind.ErrInvalid, l.StartTLI, l.StartWAL)
	}
	if seen["STOP WAL LOCATION"] && l.StopLSN < l.StartLSN {
		return l, fmt.Errorf("%w: backup label: stop %s before start %s", errkind.ErrInvalid, l.StopLSN, l.StartLSN)
	}
	return l, sc.Err()
}

// parseWALLocation parses "0/2000028 (file 000000010000000000000002)".
func parseWALLocation(v string) (LSN, Name, error) {
	lsnText, rest, ok := strings.Cut(v, " (file ")
	if !ok || !strings.HasSuffix(rest, ")") {
		return 0, Name{}, fmt.Errorf("%w: %q: want \"LSN (file NAME)\"", errkind.ErrInvalid, errkind.Quote(v))
	}
	lsn, err := ParseLSN(lsnText)
	if err != nil {
		return 0, Name{}, err
	}
	n, err := ParseName(strings.TrimSuffix(rest, ")"))
	if err != nil || n.Kind != Segment {
		return 0, Name{}, fmt.Errorf("%w: %q names no segment", errkind.ErrInvalid, errkind.Quote(v))
	}
	return lsn, n, nil
}

func parseTLI(v string) (uint32, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: timeline %q", errkind.ErrInvalid, errkind.Quote(v))
	}
	return uint32(n), nil
}

func parsePGTime(v string) (time.Time, error) {
	t, err := time.Parse("2006-01-02 15:04:05 MST", v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: time %q", errkind.ErrInvalid, errkind.Quote(v))
	}
	return t, nil
}

// CheckBackupFile checks that the .backup file called name holds label:
// same start segment and the offset inside it.
func CheckBackupFile(name Name, l BackupLabel) error {
	if name.Kind != Backup {
		return fmt.Errorf("%w: %s is not a backup history file", errkind.ErrInvalid, name)
	}
	seg := Name{Kind: Segment, TLI: name.TLI, Log: name.Log, Seg: name.Seg}
	if l.StartWAL != seg {
		return fmt.Errorf("%w: %s holds a backup starting in %s", errkind.ErrInvalid, name, l.StartWAL)
	}
	// The offset is StartLSN modulo the (unknown, power-of-two, at least
	// 1 MiB) segment size, so StartLSN-offset is a multiple of 1 MiB.
	off, start := uint64(name.Offset), uint64(l.StartLSN)
	if off > start || off >= MaxSegmentSize || (start-off)%MinSegmentSize != 0 {
		return fmt.Errorf("%w: %s: start position %s does not match offset %08X", errkind.ErrInvalid, name, l.StartLSN, name.Offset)
	}
	return nil
}
