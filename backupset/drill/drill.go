// Package drill runs restore drills: a backup restored into a scratch
// directory and recovered by a real PostgreSQL server that runs nothing
// of the database host's (walstore writes its configuration), fetching
// WAL through a read-only door to one archive (drillfetch.go).
package drill

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/backupset"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/catalog"
	"github.com/walstore/walstore/wal"
)

// Options configure Drill.
type Options struct {
	Archive *archive.Archive
	Backup  string           // "latest" or an id
	Target  backupset.Target // optional: recover to this target instead of the end
	// Scratch is where the scratch data directory goes (default the
	// system's temporary directory); it needs room for the backup.
	Scratch string
	// OSUser runs PostgreSQL (default postgres when run as root).
	OSUser string
	// DBUser is a superuser role of the cluster, to ask it how far it got
	// (default postgres).
	DBUser string
	// WalFetch is the walfetch binary of the drill's restore_command,
	// which reads through the drill's own connection (fetchDoor): no
	// token, key or certificate is handed to the drill's server.
	WalFetch string
	// PGBin is where pg_ctl is (default: the backup's major version's).
	PGBin string
	Out   io.Writer
}

// Run proves that an archive restores: it restores a backup into a
// scratch directory, runs PostgreSQL recovery on it (a free local port,
// socket only, archiving off, as the cluster's OS user) to the end of the
// archive or to a target, checks that it reached consistency and the
// newest archived position on its path, stops it and removes the scratch
// copy. The returned record says how long each part took and how far
// recovery got; an error says which link broke.
func Run(ctx context.Context, opt Options) (archive.Drill, error) {
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	start := time.Now()
	d := archive.Drill{ID: archive.NewBackupID(start), Archive: opt.Archive.Name, Started: start.UTC()}
	err := drill(ctx, opt, &d)
	d.Seconds = time.Since(start).Seconds()
	d.OK = err == nil
	if err != nil {
		d.Error = err.Error()
	}
	return d, err
}

func drill(ctx context.Context, opt Options, d *archive.Drill) error {
	a := opt.Archive
	uid, gid, err := drillUser(&opt)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(opt.Scratch, "walstore-drill-")
	if err != nil {
		return fmt.Errorf("%w: scratch directory: %v", errkind.ErrInvalid, err)
	}
	defer os.RemoveAll(dir)
	// The server writes its log and socket here: the OS user owns it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
	}
	// restore_command reads through the drill itself: no token or key is
	// written where the drill's PostgreSQL could read it.
	door, err := startFetchDoor(a, filepath.Join(dir, "fetch.sock"), uid, gid)
	if err != nil {
		return err
	}
	defer door.close()
	cmd := backupset.CommandSettings{WalFetch: opt.WalFetch, Repo: door.URL(), Archive: a.Name}
	pgdata := filepath.Join(dir, "data")
	t0 := time.Now()
	res, err := backupset.Restore(ctx, backupset.RestoreOptions{
		Archive: a, Backup: opt.Backup, PGData: pgdata, Target: opt.Target, Owner: opt.OSUser,
		RestoreCommand: backupset.RestoreCommand(cmd), Out: io.Discard, StripCommands: true,
		TablespacesUnder: filepath.Join(dir, "tablespaces"), // never the cluster's own
	})
	d.Backup = res.Backup.ID // known once the backup was chosen
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	d.Backup, d.RestoreSeconds = res.Backup.ID, time.Since(t0).Seconds()
	fmt.Fprintf(opt.Out, "drill: restored backup %s in %.1fs; recovering\n", d.Backup, d.RestoreSeconds)
	inv, err := catalog.Load(ctx, a)
	if err != nil {
		return err
	}
	tl, _, err := inv.ChooseTimeline(res.Backup)
	if err != nil {
		return err
	}
	d.Timeline = tl
	expected, ok := newestOnPath(inv, res.Backup, tl)
	if ok {
		d.Expected = expected.String()
	}
	pgbin := opt.PGBin
	if pgbin == "" {
		pgbin = fmt.Sprintf("/usr/lib/postgresql/%d/bin", res.Backup.PGVersion/10000)
	}
	srv := &drillServer{dir: dir, pgdata: pgdata, bin: pgbin, osUser: opt.OSUser, dbUser: opt.DBUser}
	if err := srv.prepare(uid, gid, res.Settings); err != nil {
		return err
	}
	t1 := time.Now()
	if err := srv.start(ctx); err != nil {
		return err
	}
	defer srv.stop()
	replayed, err := srv.waitRecovered(ctx)
	d.RecoverySeconds = time.Since(t1).Seconds()
	d.ReplayedTo = replayed
	if start, perr := res.Backup.Start(); perr == nil && replayed > start {
		d.WALBytes = int64(replayed - start)
	}
	if err != nil {
		return err
	}
	if !opt.Target.Set() && ok && replayed < expected.StartLSN(inv.SegSize) {
		return fmt.Errorf("%w: recovery ended at %s, but the archive holds WAL of that path up to %s: %s", catalog.ErrGap, replayed, expected, whyStopped(inv, tl, replayed, expected))
	}
	return nil
}

// whyStopped names the first segment recovery needed after replayed and
// the archive lacks, or says the next one could not be used.
func whyStopped(inv *catalog.Inventory, tl uint32, replayed wal.LSN, expected wal.Name) string {
	size := inv.SegSize
	first := uint64(replayed) / uint64(size)
	if first > 0 && uint64(replayed)%uint64(size) == 0 {
		first-- // a switch record ends exactly at the boundary
	}
	for seg := first; seg <= expected.SegNo(size); seg++ {
		n := wal.SegmentName(inv.Histories.TimelineFor(tl, seg, size), seg, size)
		if !inv.Has(n) {
			return fmt.Sprintf("segment %s is missing from the archive", n)
		}
	}
	next := wal.SegmentName(inv.Histories.TimelineFor(tl, first+1, size), first+1, size)
	return fmt.Sprintf("segment %s is in the archive but recovery could not use it (walstored verify checks it)", next)
}

// newestOnPath is the newest segment the archive holds on the path
// recovery from r follows.
func newestOnPath(inv *catalog.Inventory, r archive.Record, tl uint32) (wal.Name, bool) {
	var best wal.Name
	found := false
	for tli, segs := range inv.Segments {
		for _, s := range segs {
			if inv.Histories.TimelineFor(tl, s, inv.SegSize) != tli {
				continue
			}
			n := wal.SegmentName(tli, s, inv.SegSize)
			if !found || s > best.SegNo(inv.SegSize) {
				best, found = n, true
			}
		}
	}
	return best, found
}

// drillUser resolves who runs PostgreSQL.
func drillUser(opt *Options) (int, int, error) {
	if opt.DBUser == "" {
		opt.DBUser = "postgres"
	}
	if os.Geteuid() != 0 {
		opt.OSUser = ""
		return -1, -1, nil
	}
	if opt.OSUser == "" {
		opt.OSUser = "postgres"
	}
	u, err := user.Lookup(opt.OSUser)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: --os-user %s: %v", errkind.ErrInvalid, opt.OSUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// drillServer is the PostgreSQL server a drill runs.
type drillServer struct {
	dir, pgdata, bin string
	osUser, dbUser   string
	port             int
}

func (s *drillServer) command(name string, args ...string) *exec.Cmd {
	bin := filepath.Join(s.bin, name)
	if s.osUser != "" {
		return exec.Command("runuser", append([]string{"-u", s.osUser, "--", bin}, args...)...)
	}
	return exec.Command(bin, args...)
}

// prepare writes the whole configuration of the drill's server: nothing
// the backup carried is read. The server is started with config_file
// naming drill.conf in the drill's directory (so the backup's
// postgresql.conf, its includes and conf.d are never read), and the
// restored postgresql.auto.conf, which PostgreSQL always reads, is
// replaced by the recovery settings the restore wrote. No setting that
// runs a command or loads a library (archive_command, *_preload_libraries,
// recovery_end_command, ssl_passphrase_command, ...) can come from a
// database host, however it was written. The settings hot standby needs
// at least the primary's values of come from the backup's pg_control.
func (s *drillServer) prepare(uid, gid int, recovery []string) error {
	if _, err := os.Stat(filepath.Join(s.bin, "pg_ctl")); err != nil {
		return fmt.Errorf("%w: no PostgreSQL server binaries in %s (install the server package of the backup's major version, or give --pg-bin)", errkind.ErrConfig, s.bin)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	s.port = port
	conf, err := s.controlSettings()
	if err != nil {
		return err
	}
	conf = append([]string{"# written by walstored drill: the drill's server reads nothing the backup carried"}, conf...)
	conf = append(conf,
		"hba_file = '"+filepath.Join(s.dir, "drill_hba.conf")+"'",
		"ident_file = '"+filepath.Join(s.dir, "drill_ident.conf")+"'",
	)
	files := map[string]string{
		filepath.Join(s.dir, "drill_hba.conf"):          "local all all trust\n",
		filepath.Join(s.dir, "drill_ident.conf"):        "",
		filepath.Join(s.dir, "drill.conf"):              strings.Join(conf, "\n") + "\n",
		filepath.Join(s.pgdata, "postgresql.auto.conf"): "# written by walstored drill: only the restore's recovery settings\n" + strings.Join(recovery[1:], "\n") + "\n",
	}
	for p, text := range files {
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			return err
		}
		if uid >= 0 {
			if err := os.Chown(p, uid, gid); err != nil {
				return err
			}
		}
	}
	return nil
}

// controlSettings reads from the restored pg_control the settings a
// standby needs at least the primary's values of.
func (s *drillServer) controlSettings() ([]string, error) {
	// As the drill's OS user, like the server: pg_control came from a
	// database host.
	out, err := s.command("pg_controldata", s.pgdata).Output()
	if err != nil {
		return nil, fmt.Errorf("pg_controldata of the restored copy: %v", err)
	}
	names := map[string]string{
		"max_connections setting": "max_connections", "max_worker_processes setting": "max_worker_processes",
		"max_wal_senders setting": "max_wal_senders", "max_prepared_xacts setting": "max_prepared_transactions",
		"max_locks_per_xact setting": "max_locks_per_transaction",
	}
	var conf []string
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if name, known := names[strings.TrimSpace(k)]; ok && known {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
				conf = append(conf, fmt.Sprintf("%s = %d", name, n))
			}
		}
	}
	return conf, nil
}

func (s *drillServer) start(ctx context.Context) error {
	opts := []string{
		"-c config_file='" + filepath.Join(s.dir, "drill.conf") + "'",
		"-c port=" + strconv.Itoa(s.port),
		"-c listen_addresses=''",
		"-c unix_socket_directories='" + s.dir + "'",
		"-c hba_file='" + filepath.Join(s.dir, "drill_hba.conf") + "'",
		"-c archive_mode=off",
		"-c hot_standby=on",
		"-c ssl=off",
		"-c logging_collector=off",
		"-c shared_preload_libraries=''",
		"-c cluster_name='walstore-drill'",
	}
	out, err := s.command("pg_ctl", "start", "-W", "-D", s.pgdata, "-l", filepath.Join(s.dir, "postgresql.log"), "-o", strings.Join(opts, " ")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// waitRecovered waits until recovery ended (the server promoted, or
// paused or shut down at a target) and returns how far it replayed. A
// server that died on the way is an error quoting its log.
func (s *drillServer) waitRecovered(ctx context.Context) (wal.LSN, error) {
	var last wal.LSN
	// pg_ctl start -W returns before the postmaster writes its pid file.
	sawPID, startBy := false, time.Now().Add(time.Minute)
	for {
		if err := ctx.Err(); err != nil {
			return last, fmt.Errorf("recovery did not finish in time (replayed to %s): %w", last, err)
		}
		alive, pidFile := s.alive()
		sawPID = sawPID || pidFile
		if !alive && (sawPID || time.Now().After(startBy) || strings.Contains(s.logFatal(), "FATAL")) {
			return last, fmt.Errorf("PostgreSQL stopped during recovery: %s", s.logFatal())
		}
		inRecovery, lsn, paused, err := s.status(ctx)
		if err == nil {
			last = lsn
			if !inRecovery || paused {
				return last, nil
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *drillServer) status(ctx context.Context) (inRecovery bool, lsn wal.LSN, paused bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// search_path from the startup packet outranks what the restored
	// catalogs set for the role or database: a function planted in
	// public under a built-in's name is never what this calls.
	conn, err := pgx.Connect(cctx, fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable options='-c search_path=pg_catalog'", s.dir, s.port, s.dbUser))
	if err != nil {
		return false, 0, false, err
	}
	defer conn.Close(context.Background())
	var text string
	err = conn.QueryRow(cctx, `SELECT pg_catalog.pg_is_in_recovery(), coalesce(pg_catalog.pg_last_wal_replay_lsn()::pg_catalog.text, '0/0'),
		CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_get_wal_replay_pause_state() OPERATOR(pg_catalog.<>) 'not paused' ELSE false END`).Scan(&inRecovery, &text, &paused)
	if err != nil {
		return false, 0, false, err
	}
	lsn, err = wal.ParseLSN(text)
	return inRecovery, lsn, paused, err
}

// alive reports whether the postmaster runs, and whether its pid file
// was there to tell.
func (s *drillServer) alive() (alive, pidFile bool) {
	b, err := os.ReadFile(filepath.Join(s.pgdata, "postmaster.pid"))
	if err != nil {
		return false, false
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid > 0 && syscall.Kill(pid, 0) == nil, true
}

// logFatal is the server log's first FATAL or PANIC line (else its tail).
func (s *drillServer) logFatal() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "postgresql.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines {
		// The drill's own status queries while the server starts are not
		// why it stopped.
		if strings.Contains(l, "not yet accepting connections") || strings.Contains(l, "is starting up") {
			continue
		}
		if strings.Contains(l, "FATAL:") || strings.Contains(l, "PANIC:") {
			return strings.TrimSpace(l)
		}
	}
	if n := len(lines); n > 0 {
		return strings.TrimSpace(lines[n-1])
	}
	return "no log"
}

func (s *drillServer) stop() {
	if alive, _ := s.alive(); alive {
		s.command("pg_ctl", "stop", "-w", "-t", "60", "-m", "immediate", "-D", s.pgdata).Run()
	}
}

// freePort returns a TCP port that was free a moment ago (the drill's
// server listens on its socket only, but the port names the socket).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
