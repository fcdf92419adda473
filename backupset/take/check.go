package take

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/conffile"
	"github.com/walstore/walstore/base/errkind"
)

// Cluster is what Take learns about the cluster before backing it up.
type Cluster struct {
	SystemID       uint64
	VersionNum     int // server_version_num, e.g. 150018
	WalLevel       string
	ArchiveMode    string
	ArchiveCommand string
	// ArchiveLibrary is archive_library (PostgreSQL 15 and later): when
	// set, PostgreSQL archives through it and ignores archive_command.
	ArchiveLibrary string
	SegmentSize    int64
	Tablespaces    []string
	InRecovery     bool
	// ArchiveFailing is set when the archiver's last attempt failed
	// (pg_stat_archiver), with the file it failed on.
	ArchiveFailing string
	// RecoverySettings are recovery settings (recovery_target*,
	// restore_command, ...) the cluster carries, "name = value": left by
	// an earlier recovery, they travel in every base backup.
	RecoverySettings []string
}

// Major is the major version (15 for 150018).
func (c Cluster) Major() int { return c.VersionNum / 10000 }

// Archiver says how the cluster archives, for messages: its
// archive_library when set (walstore's module and agent), else its
// archive_command.
func (c Cluster) Archiver() string {
	if c.ArchiveLibrary != "" {
		return fmt.Sprintf("archive_library = '%s'", c.ArchiveLibrary)
	}
	return "archive_command: " + c.ArchiveCommand
}

// Inspect connects with conninfo (libpq keyword/value or URL form) and
// reads the settings a backup depends on.
func Inspect(ctx context.Context, conninfo string) (Cluster, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgConnect(ctx, conninfo)
	if err != nil {
		return Cluster{}, err
	}
	defer conn.Close(context.Background())
	var c Cluster
	var sysid, ver, segsize string
	err = conn.QueryRow(ctx, `SELECT system_identifier::text, current_setting('server_version_num'),
		current_setting('wal_level'), current_setting('archive_mode'), current_setting('archive_command'),
		coalesce(current_setting('archive_library', true), ''),
		current_setting('wal_segment_size'), pg_is_in_recovery()
		FROM pg_control_system()`).Scan(&sysid, &ver, &c.WalLevel, &c.ArchiveMode, &c.ArchiveCommand, &c.ArchiveLibrary, &segsize, &c.InRecovery)
	if err != nil {
		return Cluster{}, fmt.Errorf("read the cluster's settings: %w", err)
	}
	c.SystemID, _ = strconv.ParseUint(sysid, 10, 64)
	c.VersionNum, _ = strconv.Atoi(ver)
	if c.SegmentSize, err = parsePGSize(segsize); err != nil {
		return Cluster{}, err
	}
	var failing *string
	err = conn.QueryRow(ctx, `SELECT last_failed_wal FROM pg_stat_archiver
		WHERE last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time)`).Scan(&failing)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Cluster{}, fmt.Errorf("read pg_stat_archiver: %w", err)
	}
	if failing != nil {
		c.ArchiveFailing = *failing
	}
	rs, err := conn.Query(ctx, `SELECT name || ' = ' || setting FROM pg_settings
		WHERE (name LIKE 'recovery_target%' AND name NOT IN ('recovery_target_timeline', 'recovery_target_inclusive', 'recovery_target_action') AND setting <> '')
		   OR (name IN ('restore_command', 'recovery_end_command', 'archive_cleanup_command') AND setting <> '') ORDER BY 1`)
	if err != nil {
		return Cluster{}, fmt.Errorf("read pg_settings: %w", err)
	}
	if c.RecoverySettings, err = pgx.CollectRows(rs, pgx.RowTo[string]); err != nil {
		return Cluster{}, err
	}
	// walstore's own restore_command on a promoted standby is what the
	// failover walk-through keeps (pg_rewind fetches through it): no
	// warning for it.
	c.RecoverySettings = slices.DeleteFunc(c.RecoverySettings, func(s string) bool {
		return strings.HasPrefix(s, "restore_command = ") && strings.Contains(s, "walfetch")
	})
	rows, err := conn.Query(ctx, `SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1`)
	if err != nil {
		return Cluster{}, err
	}
	c.Tablespaces, err = pgx.CollectRows(rows, pgx.RowTo[string])
	return c, err
}

// parsePGSize parses "16MB" as PostgreSQL prints wal_segment_size.
func parsePGSize(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * u.mult, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

var (
	archiveFlag = regexp.MustCompile(`--archive[= ]+["']?([A-Za-z0-9._-]+)`)
	configFlag  = regexp.MustCompile(`--config[= ]+["']?([^"' ]+)`)
)

// CommandArchive reads the archive an archive_command pushes to: its
// --archive flag; else the archive of the config file its --config
// names, when that file can be read here; else the default. known is
// false when it cannot tell (the file is elsewhere, or the archive comes
// from the environment).
func CommandArchive(command string) (name string, known bool, why string) {
	if m := archiveFlag.FindStringSubmatch(command); m != nil {
		return m[1], true, ""
	}
	if m := configFlag.FindStringSubmatch(command); m != nil {
		lines, err := conffile.Read(m[1])
		if err != nil {
			return "", false, fmt.Sprintf("its config file cannot be read here (%v)", err)
		}
		if v, ok := conffile.Value(lines, "walpush", "archive"); ok {
			return v, true, ""
		}
		return archive.DefaultArchive, true, ""
	}
	if strings.Contains(command, "WALSTORE_") {
		return "", false, "it takes its settings from the environment"
	}
	return archive.DefaultArchive, true, ""
}

// Check refuses a cluster that a backup into archive a could not restore:
// WAL not kept for archive recovery, WAL not archived (or archived
// elsewhere), or another cluster's archive.
// bound is the archive's system identifier (0 if it has none yet).
// checkCommand=false skips the archive_command check (for an
// archive_command that takes its settings from the environment).
// NeedsProof reports whether archive_command's text does not say which
// walstore archive it pushes to (a wrapper script, settings from its
// environment): whether it reaches the archive is then proven by making
// PostgreSQL archive a segment (CheckArchiving).
func (c Cluster) NeedsProof() bool {
	if c.InRecovery {
		return false
	}
	if c.ArchiveLibrary != "" {
		return true // the module's agent holds the archive's name
	}
	_, known, _ := CommandArchive(c.ArchiveCommand)
	return !known || !strings.Contains(c.ArchiveCommand, "walpush")
}

func (c Cluster) Check(archiveName string, bound uint64, checkCommand bool) error {
	if c.WalLevel != "replica" && c.WalLevel != "logical" {
		return fmt.Errorf("%w: wal_level is %q; a base backup needs replica or logical (then restart PostgreSQL)", errkind.ErrInvalid, c.WalLevel)
	}
	if c.InRecovery {
		// A standby archives nothing itself: its backup's WAL comes from
		// the primary's archiving into the archive, which must already be
		// bound to this system; the backup then waits for that WAL.
		if bound == 0 {
			return fmt.Errorf("%w: the cluster is a standby and archive %s has never received a segment: a backup from a standby needs its primary archiving into the archive first", errkind.ErrInvalid, archiveName)
		}
		checkCommand = false
	}
	if !c.InRecovery && c.ArchiveMode != "on" && c.ArchiveMode != "always" {
		return fmt.Errorf("%w: archive_mode is %q: without archiving, the WAL a restore needs is never stored; set archive_mode = on and archive_command = 'walpush --archive %s %%p', then restart", errkind.ErrInvalid, c.ArchiveMode, archiveName)
	}
	if checkCommand && c.ArchiveLibrary == "" {
		// A command whose target cannot be read from its text (a wrapper
		// script, settings from its environment) is proven end to end by
		// the caller instead (NeedsProof).
		got, known, _ := CommandArchive(c.ArchiveCommand)
		if known && strings.Contains(c.ArchiveCommand, "walpush") && got != archiveName {
			return fmt.Errorf("%w: archive_command pushes to archive %q, not %q (%s); if it really pushes to %s (settings from its environment), give --skip-archive-command-check", errkind.ErrInvalid, got, archiveName, c.ArchiveCommand, archiveName)
		}
	}
	if c.ArchiveFailing != "" && !c.InRecovery {
		return fmt.Errorf("%w: archiving is failing (last failed on %s, see pg_stat_archiver and the server log); a backup's WAL would not reach archive %s", errkind.ErrInvalid, c.ArchiveFailing, archiveName)
	}
	if bound != 0 && bound != c.SystemID {
		return &archive.WrongSystemError{Archive: archiveName, Bound: bound, Got: c.SystemID}
	}
	return nil
}

// boundSystem returns the archive's system identifier, 0 if unbound.
func boundSystem(ctx context.Context, a *archive.Archive) (uint64, error) {
	id, err := a.SystemID(ctx)
	if errors.Is(err, errkind.ErrNotFound) {
		return 0, nil
	}
	return id, err
}

// pgConnect connects for the checks; a failure is one line.
func pgConnect(ctx context.Context, conninfo string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(conninfo)
	if err != nil {
		return nil, fmt.Errorf("%w: --pg: %v", errkind.ErrInvalid, err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to the cluster at %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	return conn, nil
}
