package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/catalog"
	"github.com/walstore/walstore/retention"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// The scanner is what walstored knows of every archive beyond the requests
// it serves: a catalog scan of the repository (catalog.Summarize) every
// interval, and soon after a backup, drill or retirement record is written.
// The metrics of backup age, recoverability and dead branches come from
// it, so that "no backup for 26 hours" can be alerted on.
type scanner struct {
	store    store.Store
	interval time.Duration
	late     time.Duration
	poked    chan struct{}

	mu       sync.Mutex
	at       time.Time // end of the last scan
	took     time.Duration
	failures int
	listErr  error // the last scan could not list the archives
	archives map[string]scanned
}

// scanned is one archive as the last scan saw it.
type scanned struct {
	Summary catalog.Summary
	Picture catalog.Picture
	Drill   *archive.Drill // the newest drill, nil if none ran
	Cut     *retentionCut  // where retention cuts next, nil if it never ran
	Err     error          // the scan of this archive failed
}

// retentionCut is what a retention run with the policy of the archive's
// last one would do now.
type retentionCut struct {
	LastRun    time.Time `json:"last_run"`
	KeepLast   int       `json:"keep_last"`
	KeepWithin string    `json:"keep_within"`
	OldestKept string    `json:"oldest_kept_backup"`
	At         time.Time `json:"cut_time"` // the oldest kept backup's start: nothing before it is kept
	KeepFrom   string    `json:"wal_kept_from"`
	Expires    []string  `json:"backups_expiring"`
}

func newScanner(s store.Store, interval, late time.Duration) *scanner {
	return &scanner{store: s, interval: interval, late: late, poked: make(chan struct{}, 1), archives: map[string]scanned{}}
}

// poke asks for a scan soon (a record that changes the summary was
// written).
func (sc *scanner) poke() {
	select {
	case sc.poked <- struct{}{}:
	default:
	}
}

// run scans at once, then every interval or when poked, until ctx ends.
func (sc *scanner) run(ctx context.Context) {
	for {
		sc.scan(ctx)
		t := time.NewTimer(sc.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-sc.poked:
			t.Stop()
			// Several records come together (a backup's record, then its
			// .backup label): one scan for all of them.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

func (sc *scanner) scan(ctx context.Context) {
	start := time.Now()
	names, err := archive.Archives(ctx, sc.store)
	out := map[string]scanned{}
	failed := err != nil
	for _, name := range names {
		st := sc.scanArchive(ctx, name)
		failed = failed || st.Err != nil
		out[name] = st
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if err == nil {
		sc.archives = out
	}
	sc.listErr = err
	if failed {
		sc.failures++
	}
	sc.at, sc.took = time.Now(), time.Since(start)
}

func (sc *scanner) scanArchive(ctx context.Context, name string) scanned {
	failed := func(err error) scanned {
		return scanned{Summary: catalog.Summary{Archive: name, State: "error", Reasons: []string{err.Error()}}, Err: err}
	}
	a, err := archive.New(sc.store, name)
	if err != nil {
		return failed(err)
	}
	inv, err := catalog.Load(ctx, a)
	if err != nil {
		return failed(err)
	}
	sysid, _ := a.SystemID(ctx)
	now := time.Now()
	st := scanned{Summary: catalog.Summarize(inv, sysid, now, sc.late), Picture: catalog.Draw(inv, now)}
	// One listing of the archive's records: the newest drill, retention
	// run and recompression pass.
	d, run, rec, err := a.LastRecords(ctx)
	if err != nil && !errors.Is(err, errkind.ErrKey) {
		st.Err = err
	}
	st.Drill = d
	if run != nil {
		st.Cut = nextCut(inv, *run, st.Picture, now)
	}
	if rec != nil {
		st.Summary.RecompressSaved = rec.SavedTotal
	}
	return st
}

// expired turns the not-found err of key into ErrExpired when key names a
// segment older than the archive's oldest at the last scan: retention
// removed it, and no wait will bring it (a lagging standby's log then
// says so). Segments only ever leave the bottom of an archive, so a scan
// that is minutes old cannot mislabel one.
func (sc *scanner) expired(key string, err error) error {
	k, kerr := archive.ParseKey(key)
	if kerr != nil || k.Kind != archive.KindWAL || k.WAL.Kind != wal.Segment {
		return err
	}
	sc.mu.Lock()
	st, ok := sc.archives[k.Archive]
	sc.mu.Unlock()
	size := st.Summary.SegmentSize
	if !ok || st.Summary.OldestSegment == "" || !wal.ValidSegmentSize(size) {
		return err
	}
	oldest, perr := wal.ParseName(st.Summary.OldestSegment)
	if perr != nil || k.WAL.SegNo(size) >= oldest.SegNo(size) {
		return err
	}
	return fmt.Errorf("%w: %s is not in archive %s, whose WAL begins at %s: retention removed it; a cluster that needs it must be restored from a newer backup (or fed by streaming replication)",
		errkind.ErrExpired, k.WAL, k.Archive, st.Summary.OldestSegment)
}

// snapshot returns the archives as last scanned, by name.
// lastListErr is why the last scan could not list the archives (nil if
// it could).
func (sc *scanner) lastListErr() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.listErr
}

func (sc *scanner) snapshot() (at time.Time, out []scanned) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, st := range sc.archives {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Summary.Archive < out[j].Summary.Archive })
	return sc.at, out
}

var (
	descBackups = prometheus.NewDesc("walstore_archive_backups",
		"Completed backups in the archive (catalog scan).", []string{"archive"}, nil)
	descNewestBackup = prometheus.NewDesc("walstore_archive_newest_backup_timestamp_seconds",
		"When the newest completed backup ended (Unix time; absent without one).", []string{"archive"}, nil)
	descNewestBackupAge = prometheus.NewDesc("walstore_archive_newest_backup_age_seconds",
		"Seconds since the newest completed backup ended (absent without one).", []string{"archive"}, nil)
	descRecFrom = prometheus.NewDesc("walstore_archive_recoverable_from_timestamp_seconds",
		"The oldest time a restore can reach: the end of the oldest backup with continuous WAL (Unix time; absent when nothing is recoverable).", []string{"archive"}, nil)
	descRecTo = prometheus.NewDesc("walstore_archive_recoverable_to_timestamp_seconds",
		"The newest time a restore can reach: when the newest segment on a backup's continuous path was archived (Unix time).", []string{"archive"}, nil)
	descNewestWAL = prometheus.NewDesc("walstore_archive_newest_segment_timestamp_seconds",
		"When the archive's newest segment was stored (Unix time, catalog scan).", []string{"archive"}, nil)
	descGaps = prometheus.NewDesc("walstore_archive_wal_gaps",
		"Gaps in the archive's WAL, over all timelines.", []string{"archive"}, nil)
	descDead = prometheus.NewDesc("walstore_archive_dead_branches",
		"Dead timeline branches in recovery's view (walstored verify names them; walstored timeline retire takes one out).", []string{"archive"}, nil)
	descBroken = prometheus.NewDesc("walstore_archive_broken_objects",
		"Objects the last walstored verify found that recovery cannot use, still stored (quarantine a bad WAL object).", []string{"archive"}, nil)
	descScanNewestTLI = prometheus.NewDesc("walstore_archive_catalog_newest_timeline",
		"Timeline of the archive's newest segment (catalog scan, retired timelines left out).", []string{"archive"}, nil)
	descDrillAt = prometheus.NewDesc("walstore_archive_last_drill_timestamp_seconds",
		"When the last restore drill started (Unix time; absent if none ran).", []string{"archive"}, nil)
	descDrillOK = prometheus.NewDesc("walstore_archive_last_drill_success",
		"1 if the last restore drill recovered to the end of the archive, else 0.", []string{"archive"}, nil)
	descDrillSecs = prometheus.NewDesc("walstore_archive_last_drill_duration_seconds",
		"How long the last restore drill took, restore and recovery.", []string{"archive"}, nil)
	descSaved = prometheus.NewDesc("walstore_archive_recompress_saved_bytes",
		"Stored bytes that recompression (walstored recompress) saved in the archive so far.", []string{"archive"}, nil)
	descScanErr = prometheus.NewDesc("walstore_archive_scan_error",
		"1 if the last catalog scan of the archive failed (see walstored's log).", []string{"archive"}, nil)
	descScanAt = prometheus.NewDesc("walstore_catalog_scan_timestamp_seconds",
		"When the last catalog scan of the repository ended (Unix time).", nil, nil)
	descScanFailures = prometheus.NewDesc("walstore_catalog_scan_failures_total",
		"Catalog scans in which some archive could not be read.", nil, nil)
)

// Describe and Collect make the scanner a collector.
func (sc *scanner) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBackups, descNewestBackup, descNewestBackupAge, descRecFrom, descRecTo, descNewestWAL,
		descGaps, descDead, descBroken, descScanNewestTLI, descDrillAt, descDrillOK, descDrillSecs, descSaved, descScanErr, descScanAt, descScanFailures} {
		ch <- d
	}
}

func (sc *scanner) Collect(ch chan<- prometheus.Metric) {
	at, all := sc.snapshot()
	sc.mu.Lock()
	failures := sc.failures
	sc.mu.Unlock()
	if at.IsZero() {
		return
	}
	now := time.Now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	unix := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	ch <- prometheus.MustNewConstMetric(descScanAt, prometheus.GaugeValue, unix(at))
	ch <- prometheus.MustNewConstMetric(descScanFailures, prometheus.CounterValue, float64(failures))
	for _, st := range all {
		s := st.Summary
		name := s.Archive
		if st.Err != nil {
			gauge(descScanErr, 1, name)
			continue
		}
		gauge(descScanErr, 0, name)
		gauge(descBackups, float64(s.Backups), name)
		if !s.NewestBackupTime.IsZero() {
			gauge(descNewestBackup, unix(s.NewestBackupTime.Time), name)
			gauge(descNewestBackupAge, now.Sub(s.NewestBackupTime.Time).Seconds(), name)
		}
		if !s.RecoverableFrom.IsZero() {
			gauge(descRecFrom, unix(s.RecoverableFrom.Time), name)
		}
		if !s.RecoverableTo.IsZero() {
			gauge(descRecTo, unix(s.RecoverableTo.Time), name)
		}
		if !s.NewestWALTime.IsZero() {
			gauge(descNewestWAL, unix(s.NewestWALTime.Time), name)
			gauge(descScanNewestTLI, float64(s.NewestTimeline), name)
		}
		gauge(descGaps, float64(s.Gaps), name)
		gauge(descDead, float64(len(s.DeadBranches)), name)
		gauge(descBroken, float64(len(s.Broken)), name)
		gauge(descSaved, float64(s.RecompressSaved), name)
		if d := st.Drill; d != nil {
			gauge(descDrillAt, unix(d.Started), name)
			ok := 0.0
			if d.OK {
				ok = 1
			}
			gauge(descDrillOK, ok, name)
			gauge(descDrillSecs, d.Seconds, name)
		}
	}
}

// nextCut previews retention with the last run's policy on the scanned
// inventory (no store call).
func nextCut(inv *catalog.Inventory, run archive.RetentionRun, p catalog.Picture, now time.Time) *retentionCut {
	plan, ok := retention.Preview(inv, run, now)
	if !ok {
		return nil
	}
	c := &retentionCut{LastRun: run.RanAt, KeepLast: run.KeepLast, KeepWithin: (time.Duration(run.KeepWithinSeconds) * time.Second).String(),
		OldestKept: plan.Keep[0], KeepFrom: plan.KeepFrom.String(), Expires: append([]string{}, plan.Delete...)}
	for _, b := range p.Backups {
		if b.ID == c.OldestKept {
			c.At = b.Start
		}
	}
	return c
}
