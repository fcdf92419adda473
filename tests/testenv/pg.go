package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGBin is where Debian's postgresql-15 puts the server binaries.
const PGBin = "/usr/lib/postgresql/15/bin"

// Cluster is a PostgreSQL 15 cluster owned by the postgres user, on a free
// loopback port, stopped when the test ends.
type Cluster struct {
	t       testing.TB
	Dir     string // PGDATA
	Port    int
	LogFile string
	// Env is added to the server's environment (archive_command and
	// restore_command inherit it).
	Env []string
}

// ClusterOptions shape initdb and postgresql.conf.
type ClusterOptions struct {
	// WalSegSizeMB is initdb --wal-segsize (default 16).
	WalSegSizeMB int
	// Conf lines appended to postgresql.conf.
	Conf []string
	// DataChecksums is initdb --data-checksums.
	DataChecksums bool
}

// NewCluster runs initdb in a fresh directory under parent (a Dir).
func NewCluster(t testing.TB, parent, name string, opt ClusterOptions) *Cluster {
	t.Helper()
	if _, err := os.Stat(filepath.Join(PGBin, "initdb")); err != nil {
		t.Fatalf("PostgreSQL 15 is not installed (%s missing): apt-get install -y postgresql-15", PGBin)
	}
	base := PostgresDir(t, parent, name)
	c := &Cluster{t: t, Dir: filepath.Join(base, "data"), Port: FreePort(t), LogFile: filepath.Join(base, "postgres.log")}
	args := []string{"-D", c.Dir, "-U", "postgres", "--auth=trust", "-N", "-E", "UTF8", "--locale=C"}
	if opt.WalSegSizeMB != 0 {
		args = append(args, "--wal-segsize="+strconv.Itoa(opt.WalSegSizeMB))
	}
	if opt.DataChecksums {
		args = append(args, "--data-checksums")
	}
	if out, err := AsPostgres(filepath.Join(PGBin, "initdb"), args...).CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.WriteConf(append([]string{
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("port = %d", c.Port),
		fmt.Sprintf("unix_socket_directories = '%s'", base),
		"max_wal_senders = 10",
		"wal_level = replica",
		"fsync = on",
		"log_min_messages = info",
		"log_line_prefix = '%m [%p] '",
	}, opt.Conf...)...)
	t.Cleanup(c.stopQuietly)
	return c
}

// AsPostgres returns a command that runs as the postgres user.
func AsPostgres(name string, args ...string) *exec.Cmd {
	return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
}

// WriteConf appends lines to postgresql.conf (later lines win).
func (c *Cluster) WriteConf(lines ...string) {
	c.t.Helper()
	f, err := os.OpenFile(filepath.Join(c.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		fmt.Fprintln(f, l)
	}
}

// SocketDir is where the server's Unix socket lives.
func (c *Cluster) SocketDir() string { return filepath.Dir(c.Dir) }

// Start starts the server and waits until it accepts connections (it may
// still be recovering).
func (c *Cluster) Start() {
	c.t.Helper()
	if err := c.TryStart(); err != nil {
		c.t.Fatal(err)
	}
}

// TryStart is Start that returns the failure instead (for recoveries
// expected to stop).
func (c *Cluster) TryStart() error {
	cmd := AsPostgres(filepath.Join(PGBin, "pg_ctl"), "start", "-w", "-t", "120", "-D", c.Dir, "-l", c.LogFile)
	cmd.Env = append(os.Environ(), c.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s\n--- server log ---\n%s", err, out, c.Log())
	}
	return nil
}

// Stop stops the server with a fast shutdown.
func (c *Cluster) Stop() {
	c.t.Helper()
	out, err := AsPostgres(filepath.Join(PGBin, "pg_ctl"), "stop", "-w", "-t", "120", "-m", "fast", "-D", c.Dir).CombinedOutput()
	if err != nil {
		c.t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

func (c *Cluster) stopQuietly() {
	if c.PID() != 0 {
		AsPostgres(filepath.Join(PGBin, "pg_ctl"), "stop", "-w", "-t", "60", "-m", "immediate", "-D", c.Dir).Run()
	}
}

// PID is the postmaster's PID from postmaster.pid, or 0.
func (c *Cluster) PID() int {
	b, err := os.ReadFile(filepath.Join(c.Dir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// Kill9 kills the postmaster with SIGKILL (a crash) and waits for all its
// children to notice and exit.
func (c *Cluster) Kill9() {
	c.t.Helper()
	pid := c.PID()
	if pid == 0 {
		c.t.Fatal("kill -9: server not running")
	}
	children := childrenOf(pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	WaitFor(c.t, 30*time.Second, "postmaster and children to exit", func() bool {
		if syscall.Kill(pid, 0) == nil {
			return false
		}
		for _, ch := range children {
			if syscall.Kill(ch, 0) == nil {
				return false
			}
		}
		return true
	})
}

// childrenOf lists the PIDs whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// Log returns the server log.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(c.LogFile)
	return string(b)
}

// ConnString is a libpq connection string for the cluster.
func (c *Cluster) ConnString() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", c.Port)
}

// Conn opens a connection (closed when the test ends).
func (c *Cluster) Conn() *pgx.Conn {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString())
	if err != nil {
		c.t.Fatalf("connect: %v\n--- server log ---\n%s", err, c.Log())
	}
	c.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Exec runs SQL on a fresh connection.
func (c *Cluster) Exec(sql string, args ...any) {
	c.t.Helper()
	conn := c.Conn()
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		c.t.Fatalf("exec %q: %v", sql, err)
	}
}

// QueryString returns the first column of the first row as text.
func (c *Cluster) QueryString(sql string, args ...any) string {
	c.t.Helper()
	conn := c.Conn()
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var v any
	if err := conn.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		c.t.Fatalf("query %q: %v", sql, err)
	}
	return fmt.Sprint(v)
}

// QueryInt returns the first column of the first row as an integer.
func (c *Cluster) QueryInt(sql string, args ...any) int64 {
	c.t.Helper()
	s := c.QueryString(sql, args...)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		c.t.Fatalf("query %q: %q is not an integer", sql, s)
	}
	return n
}

// SwitchWAL closes the current segment and returns its name.
func (c *Cluster) SwitchWAL() string {
	c.t.Helper()
	return c.QueryString("SELECT pg_walfile_name(pg_switch_wal())")
}

// WaitArchived waits until the archiver reports walName (or a later file)
// as archived, and fails with the server log if archiving fails meanwhile
// and does not recover.
func (c *Cluster) WaitArchived(walName string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		last := c.QueryString("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		if len(last) >= 24 && len(walName) >= 24 && last[:24] >= walName[:24] {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s to be archived (last archived: %q); server log tail:\n%s", d, walName, last, tail(c.Log(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitRecovered waits until the server accepts writes (recovery ended).
func (c *Cluster) WaitRecovered(d time.Duration) {
	c.t.Helper()
	WaitFor(c.t, d, "recovery to end", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.ConnString())
		if err != nil {
			return false
		}
		defer conn.Close(ctx)
		var inRecovery bool
		return conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery) == nil && !inRecovery
	})
}

// SystemID is the cluster's system identifier.
func (c *Cluster) SystemID() string {
	return c.QueryString("SELECT system_identifier::text FROM pg_control_system()")
}

// Run runs a PostgreSQL client program (pgbench, pg_basebackup, ...) as
// postgres against this cluster and fails the test if it fails.
func (c *Cluster) Run(prog string, args ...string) string {
	c.t.Helper()
	cmd := AsPostgres(filepath.Join(PGBin, prog), args...)
	cmd.Env = append(os.Environ(), "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(c.Port), "PGUSER=postgres", "PGDATABASE=postgres")
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %v: %v\n%s", prog, args, err, out)
	}
	return string(out)
}

// BaseBackup takes a plain-format base backup into dir (which must not
// exist; its parent must be traversable by postgres), WAL left to the
// archive.
func (c *Cluster) BaseBackup(dir string) {
	c.t.Helper()
	c.Run("pg_basebackup", "-D", dir, "-X", "none", "-c", "fast", "--no-sync")
}

// Wipe removes PGDATA entirely (pg_wal too), as after losing the disk.
func (c *Cluster) Wipe() {
	c.t.Helper()
	if c.PID() != 0 {
		c.t.Fatal("wipe: server still running")
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		c.t.Fatal(err)
	}
}

// RestoreFrom copies a plain base backup into PGDATA and sets up archive
// recovery: restore_command, extra settings, recovery.signal.
func (c *Cluster) RestoreFrom(backup, restoreCommand string, settings ...string) {
	c.t.Helper()
	if out, err := exec.Command("cp", "-a", backup, c.Dir).CombinedOutput(); err != nil {
		c.t.Fatalf("cp backup: %v\n%s", err, out)
	}
	Chown(c.t, c.Dir)
	lines := append([]string{fmt.Sprintf("restore_command = '%s'", restoreCommand)}, settings...)
	c.WriteConf(lines...)
	c.WriteConf(fmt.Sprintf("port = %d", c.Port), fmt.Sprintf("unix_socket_directories = '%s'", c.SocketDir()))
	if err := os.WriteFile(filepath.Join(c.Dir, "recovery.signal"), nil, 0o600); err != nil {
		c.t.Fatal(err)
	}
	Chown(c.t, c.Dir)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// OpenCluster returns a Cluster for an existing data directory (a restored
// backup), on a fresh port: the port and socket go into
// postgresql.auto.conf, which PostgreSQL reads last.
func OpenCluster(t testing.TB, dir string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Dir: dir, Port: FreePort(t), LogFile: filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".log")}
	f, err := os.OpenFile(filepath.Join(dir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "port = %d\nunix_socket_directories = '%s'\n", c.Port, filepath.Dir(dir))
	f.Close()
	t.Cleanup(c.stopQuietly)
	return c
}

// AutoConf appends settings to postgresql.auto.conf, which PostgreSQL
// reads after postgresql.conf (so these win).
func (c *Cluster) AutoConf(lines ...string) {
	c.t.Helper()
	f, err := os.OpenFile(filepath.Join(c.Dir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		fmt.Fprintln(f, l)
	}
}

// ReplayLSN is pg_last_wal_replay_lsn() on a standby.
func (c *Cluster) ReplayLSN() string {
	return c.QueryString("SELECT coalesce(pg_last_wal_replay_lsn()::text, '0/0')")
}

// Promote promotes a standby and waits until it accepts writes.
func (c *Cluster) Promote() {
	c.t.Helper()
	if out, err := AsPostgres(filepath.Join(PGBin, "pg_ctl"), "promote", "-w", "-t", "120", "-D", c.Dir).CombinedOutput(); err != nil {
		c.t.Fatalf("pg_ctl promote: %v\n%s\n%s", err, out, tail(c.Log(), 30))
	}
	c.WaitRecovered(time.Minute)
}

// Timeline is the timeline a primary is writing.
func (c *Cluster) Timeline() int64 {
	return c.QueryInt("SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
}
