package take

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
)

// ArchivingReport is walstored check: whether a cluster's archiving
// reaches the archive, end to end, and how long each link took.
type ArchivingReport struct {
	Archive  string `json:"archive"`
	SystemID string `json:"system_identifier"`
	// Segment is the segment the check made PostgreSQL archive.
	Segment         string   `json:"segment"`
	SwitchedAt      string   `json:"switched_at"`
	ArchivedSeconds float64  `json:"archived_seconds"` // from the switch to the segment being in the archive
	FetchedSeconds  float64  `json:"fetched_seconds"`  // to read it back and verify it
	OK              bool     `json:"ok"`
	Error           string   `json:"error"`
	Warnings        []string `json:"warnings"`
}

// CheckArchiving checks a cluster against an archive: its settings (as a
// backup would), then it makes PostgreSQL close a segment, waits up to
// wait for that segment to reach the archive, reads it back and verifies
// it. The error names the link that broke. The connection needs a role
// that may call pg_switch_wal and pg_create_restore_point.
func CheckArchiving(ctx context.Context, a *archive.Archive, conninfo string, skipCommand bool, wait time.Duration) (ArchivingReport, error) {
	rep := ArchivingReport{Archive: a.Name, Warnings: []string{}}
	err := checkArchiving(ctx, a, conninfo, skipCommand, wait, &rep)
	rep.OK = err == nil
	if err != nil {
		rep.Error = err.Error()
	}
	return rep, err
}

func checkArchiving(ctx context.Context, a *archive.Archive, conninfo string, skipCommand bool, wait time.Duration, rep *ArchivingReport) error {
	cl, err := Inspect(ctx, conninfo)
	if err != nil {
		return err
	}
	rep.SystemID = fmt.Sprint(cl.SystemID)
	bound, err := boundSystem(ctx, a)
	if err != nil {
		return fmt.Errorf("the archive: %w", err)
	}
	if cl.InRecovery {
		return fmt.Errorf("%w: the cluster is in recovery (a standby): check its primary", errkind.ErrInvalid)
	}
	// An archiver that failed before is what a DBA runs check after
	// fixing: check tries the archiving now and judges by that, where a
	// backup (cl.Check) refuses at once.
	failedEarlier := cl.ArchiveFailing
	cl.ArchiveFailing = ""
	if err := cl.Check(a.Name, bound, !skipCommand); err != nil {
		return err
	}
	for _, st := range cl.RecoverySettings {
		rep.Warnings = append(rep.Warnings, "the cluster carries a recovery setting that every backup would carry: "+st)
	}
	conn, err := pgConnect(ctx, conninfo)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var failedBefore int64
	if err := conn.QueryRow(ctx, `SELECT failed_count FROM pg_stat_archiver`).Scan(&failedBefore); err != nil {
		return fmt.Errorf("read pg_stat_archiver: %w", err)
	}
	// still reports an archiver that was failing and failed again since
	// the check began, with nothing archived meanwhile: no need to wait.
	still := func() error {
		if failedEarlier == "" {
			return nil
		}
		var failed int64
		var lastFailed *string
		var failing bool
		err := conn.QueryRow(ctx, `SELECT failed_count, last_failed_wal,
			last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time)
			FROM pg_stat_archiver`).Scan(&failed, &lastFailed, &failing)
		if err != nil || failed <= failedBefore || !failing || lastFailed == nil {
			return nil
		}
		return fmt.Errorf("%w: archiving is failing (failed on %s before this check and again since; see pg_stat_archiver and the server log; %s)", errkind.ErrBroken, *lastFailed, cl.Archiver())
	}
	var segName string
	switched := time.Now()
	// A restore point is a WAL record, so the switch always closes a
	// segment, even on an idle cluster.
	err = conn.QueryRow(ctx, `SELECT pg_walfile_name(lsn) FROM (SELECT pg_create_restore_point('walstored check'), pg_switch_wal() AS lsn) s`).Scan(&segName)
	if err != nil {
		return fmt.Errorf("make PostgreSQL close a segment (pg_switch_wal; the role needs it): %w", err)
	}
	rep.Segment, rep.SwitchedAt = segName, switched.UTC().Format(time.RFC3339)
	n, err := wal.ParseName(segName)
	if err != nil {
		return err
	}
	// Done when the segment is in the archive and PostgreSQL itself counts
	// it archived: archive_command succeeded (a push-ahead worker may
	// have stored the segment while archive_command fails).
	deadline := time.Now().Add(wait)
	stored := false
	for {
		if !stored {
			_, err := a.Store.Stat(ctx, a.Layout.WAL(n))
			if err != nil && !errors.Is(err, errkind.ErrNotFound) {
				return fmt.Errorf("look for %s in archive %s: %w", n, a.Name, err)
			}
			stored = err == nil
		}
		if stored {
			var last *string
			if err := conn.QueryRow(ctx, `SELECT last_archived_wal FROM pg_stat_archiver`).Scan(&last); err != nil {
				return fmt.Errorf("read pg_stat_archiver: %w", err)
			}
			if last != nil && len(*last) >= 24 && (*last)[:24] >= segName {
				break
			}
		}
		if err := still(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			var failed int64
			var lastFailed *string
			conn.QueryRow(ctx, `SELECT failed_count, last_failed_wal FROM pg_stat_archiver`).Scan(&failed, &lastFailed)
			where := fmt.Sprintf("%s did not reach archive %s within %v", n, a.Name, wait)
			if stored {
				where = fmt.Sprintf("%s is in archive %s, but PostgreSQL's archive_command did not succeed on it within %v", n, a.Name, wait)
			}
			if failed > failedBefore && lastFailed != nil {
				return fmt.Errorf("%w: %s: archiving failed %d times meanwhile, last on %s (see PostgreSQL's log; %s)", errkind.ErrBroken, where, failed-failedBefore, *lastFailed, cl.Archiver())
			}
			return fmt.Errorf("%w: %s, and archiving reported no failure: it archives somewhere else? (%s)", errkind.ErrBroken, where, cl.Archiver())
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	rep.ArchivedSeconds = time.Since(switched).Seconds()
	if failedEarlier != "" {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("archiving had failed (last on %s) before this check; it works again now", failedEarlier))
	}
	t := time.Now()
	hdr, rc, err := a.OpenWAL(ctx, n)
	if err != nil {
		return fmt.Errorf("read %s back from archive %s: %w", n, a.Name, err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("read %s back from archive %s: %w", n, a.Name, err)
	}
	if hdr.SystemID != cl.SystemID {
		return fmt.Errorf("%w: %s in archive %s belongs to system %d, the cluster is %d", errkind.ErrWrongSystem, n, a.Name, hdr.SystemID, cl.SystemID)
	}
	rep.FetchedSeconds = time.Since(t).Seconds()
	return nil
}
