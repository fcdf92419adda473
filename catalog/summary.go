package catalog

import (
	"fmt"
	"sort"
	"time"

	"github.com/walstore/walstore/wal"
)

// Summary is an archive at a glance: what walstored archives prints, what
// the status page and the metrics show. It is computed from an Inventory
// alone (Summarize is pure).
type Summary struct {
	Archive        string   `json:"archive"`
	SystemID       string   `json:"system_identifier"`
	SegmentSize    int64    `json:"wal_segment_size"`
	Encrypted      bool     `json:"encrypted"`
	OldestSegment  string   `json:"oldest_segment"`
	NewestSegment  string   `json:"newest_segment"`
	NewestTimeline uint32   `json:"newest_timeline"`
	NewestLSN      wal.LSN  `json:"newest_lsn"`
	NewestWALTime  NullTime `json:"newest_wal_time"`
	NewestBackup   string   `json:"newest_backup"`
	// NewestBackupTime is when the newest completed backup ended.
	NewestBackupTime NullTime `json:"newest_backup_time"`
	Backups          int      `json:"backups"`
	// RecoverableFrom and RecoverableTo bound the times a restore can
	// reach: from the end of the oldest backup whose WAL is continuous,
	// to the archiving of the newest segment it reaches.
	RecoverableFrom NullTime `json:"recoverable_from"`
	RecoverableTo   NullTime `json:"recoverable_to"`
	WALFiles        int      `json:"wal_files"`
	WALBytes        int64    `json:"wal_bytes"`
	BackupBytes     int64    `json:"backup_bytes"`
	// RecompressSaved is the stored bytes recompression passes saved in
	// the archive (walstored recompress), as of the newest pass's record.
	RecompressSaved int64    `json:"recompress_saved_bytes"`
	Gaps            int      `json:"gaps"`
	DeadBranches    []uint32 `json:"dead_branches"`
	Retired         []uint32 `json:"retired_timelines"`
	// Broken are the objects the last verify found broken, still there.
	Broken []string `json:"broken"`
	// Quarantined counts the WAL objects set aside.
	Quarantined int `json:"quarantined"`
	// State is ok, empty, late, gap, dead_branch or broken; Reasons say
	// why in words.
	State   string   `json:"state"`
	Reasons []string `json:"reasons"`
}

// NullTime is a time that is JSON null when unknown, else RFC 3339.
type NullTime struct{ time.Time }

// MarshalJSON implements json.Marshaler.
func (t NullTime) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.UTC().Format(time.RFC3339) + `"`), nil
}

// Summarize sums an inventory up as of now. late is how long without a
// new segment makes an archive "late" (0: never).
func Summarize(inv *Inventory, sysid uint64, now time.Time, late time.Duration) Summary {
	s := Summary{Archive: inv.Archive, SegmentSize: inv.SegSize, Encrypted: inv.Encrypted, DeadBranches: []uint32{}, Retired: []uint32{}, Reasons: []string{}}
	if sysid != 0 {
		s.SystemID = fmt.Sprint(sysid)
	}
	var newest, oldest File
	for _, f := range inv.Files {
		s.WALFiles++
		s.WALBytes += f.Info.Size
		if f.Name.Kind != wal.Segment || inv.SegSize == 0 {
			continue
		}
		if oldest.Name.Kind == 0 || f.Name.SegNo(inv.SegSize) < oldest.Name.SegNo(inv.SegSize) {
			oldest = f
		}
		if newest.Name.Kind == 0 || f.Name.SegNo(inv.SegSize) > newest.Name.SegNo(inv.SegSize) ||
			f.Name.SegNo(inv.SegSize) == newest.Name.SegNo(inv.SegSize) && f.Name.TLI > newest.Name.TLI {
			newest = f
		}
	}
	if oldest.Name.Kind != 0 {
		s.OldestSegment = oldest.Name.String()
	}
	if newest.Name.Kind != 0 {
		s.NewestSegment, s.NewestTimeline = newest.Name.String(), newest.Name.TLI
		s.NewestLSN = wal.LSN((newest.Name.SegNo(inv.SegSize) + 1) * uint64(inv.SegSize))
		s.NewestWALTime = NullTime{newest.Info.ModTime}
	}
	s.Backups = len(inv.Backups.Complete)
	for _, r := range inv.Backups.Complete {
		s.BackupBytes += r.StoredSize
	}
	for _, p := range inv.Backups.Incomplete {
		s.BackupBytes += p.Bytes
	}
	if n := len(inv.Backups.Complete); n > 0 {
		r := inv.Backups.Complete[n-1]
		s.NewestBackup, s.NewestBackupTime = r.ID, NullTime{r.StopTime}
	}
	// Records encrypted with a key this reader lacks still count, dated
	// by their id (the backup's start): a walstored without the archive's
	// key must not report "no backup".
	for id := range inv.Backups.Unreadable {
		s.Backups++
		t, err := time.Parse("20060102T150405Z", id[:min(len(id), 16)])
		if err == nil && t.After(s.NewestBackupTime.Time) {
			s.NewestBackup, s.NewestBackupTime = id, NullTime{t}
		}
	}
	for _, r := range inv.Backups.Complete {
		p, err := inv.Continuity(r)
		if err != nil {
			continue
		}
		if s.RecoverableFrom.IsZero() {
			s.RecoverableFrom = NullTime{r.StopTime}
		}
		if f, ok := inv.File(p.To); ok && f.Info.ModTime.After(s.RecoverableTo.Time) {
			s.RecoverableTo = NullTime{f.Info.ModTime}
		}
	}
	for _, tli := range inv.Timelines() {
		rs := inv.Ranges(tli)
		if len(rs) > 1 {
			s.Gaps += len(rs) - 1
		}
	}
	for t := range inv.Retired {
		s.Retired = append(s.Retired, t)
	}
	sort.Slice(s.Retired, func(i, j int) bool { return s.Retired[i] < s.Retired[j] })
	for _, f := range inv.Forks() {
		if f.DeadChild || f.Both {
			s.DeadBranches = append(s.DeadBranches, f.Child)
		}
	}
	s.State = "ok"
	switch {
	case s.WALFiles == 0 && s.Backups == 0:
		s.State = "empty"
		s.Reasons = append(s.Reasons, "nothing archived yet")
	}
	if len(s.DeadBranches) > 0 {
		s.State = "dead_branch"
		for _, f := range inv.Forks() {
			if f.DeadChild || f.Both {
				s.Reasons = append(s.Reasons, f.String())
			}
		}
	}
	s.Broken = []string{}
	for _, b := range inv.Broken() {
		s.Broken = append(s.Broken, b.Key)
	}
	s.Quarantined = len(inv.Quarantined)
	if len(s.Broken) > 0 {
		s.State = "broken"
		s.Reasons = append(s.Reasons, fmt.Sprintf("the last verify (%s) found %d objects recovery cannot use, first %s: %s (set a bad WAL object aside with walstored quarantine)",
			inv.LastVerify.At.Format(time.RFC3339), len(s.Broken), inv.Broken()[0].Key, inv.Broken()[0].Error))
	}
	if s.Gaps > 0 {
		if s.State == "ok" {
			s.State = "gap"
		}
		gaps := "1 gap"
		if s.Gaps != 1 {
			gaps = fmt.Sprintf("%d gaps", s.Gaps)
		}
		s.Reasons = append(s.Reasons, gaps+" in the WAL (walstored list shows where)")
	}
	if s.Backups == 0 && s.WALFiles > 0 {
		s.Reasons = append(s.Reasons, "no completed backup: nothing can be restored yet")
		if s.State == "ok" {
			s.State = "late"
		}
	}
	if late > 0 && !s.NewestWALTime.IsZero() && now.Sub(s.NewestWALTime.Time) > late {
		s.Reasons = append(s.Reasons, fmt.Sprintf("no new segment for %s (archiving stopped?)", now.Sub(s.NewestWALTime.Time).Round(time.Second)))
		if s.State == "ok" {
			s.State = "late"
		}
	}
	return s
}
