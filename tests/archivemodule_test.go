package tests

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
)

// archiverFailures is pg_stat_archiver's failed_count.
func archiverFailures(c *testenv.Cluster) int64 {
	return c.QueryInt("SELECT failed_count FROM pg_stat_archiver")
}

// waitArchiveFailure waits until the archiver failed once more than
// before and the server log holds want.
func waitArchiveFailure(t *testing.T, c *testenv.Cluster, before int64, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for archiverFailures(c) <= before || !strings.Contains(c.Log(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no archiving failure naming %q within 2 minutes; server log:\n%s", want, c.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agentAsk sends one raw request line to an agent's socket and returns
// its answer line.
func agentAsk(t *testing.T, socket, line string) string {
	t.Helper()
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprint(conn, line)
	ans, _ := bufio.NewReader(conn).ReadString('\n')
	return ans
}

// fetchable says whether walfetch finds file in the archive.
func fetchable(t *testing.T, r repo, file string) bool {
	t.Helper()
	dir := testenv.Dir(t)
	res := testenv.Run(t, dir, r.env, testenv.Binaries(t).WalFetch, r.args(file, filepath.Join(dir, file))...)
	return res.Code == 0
}

// The archive module's life, on real PostgreSQL 15: archive_library =
// 'walstore' archives through a walpush agent with no process per file;
// the agent's crash, walstored's death and a hung agent each fail the
// archiver's calls with one log line and lose nothing; a hung agent never
// holds up shutdown; a hostile local client is refused; a backup takes its
// .backup file through the module; a restored, promoted copy archives its
// history and new timeline through its own agent; and a copy that promotes
// onto a timeline whose history was hidden from it is fenced by the
// conflict, as with walpush.
func TestArchiveModule(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir)
	r := repo{url: ws.URL}

	// The cluster starts on archive_command = walpush and moves to the
	// module with a reload, as a DBA would.
	p := archivingCluster(t, dir, "primary", r, 0)
	ag := testenv.StartAgent(t, p.Dir, nil, r.args()...)
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 1000)
	p.WaitArchived(p.SwitchWAL(), time.Minute)
	// PostgreSQL ignores archive_command once archive_library is set: a
	// leftover one naming another archive must not refuse the backup.
	p.WriteConf(append(ag.Conf(t, "5s"), "archive_command = 'walpush --archive elsewhere %p'")...)
	p.Exec("SELECT pg_reload_conf()")
	testenv.WaitFor(t, time.Minute, "the archiver to restart with the module", func() bool {
		return strings.Contains(p.Log(), `restarting archiver process because value of "archive_library" was changed`)
	})
	if got := p.QueryString("SHOW archive_library"); !strings.HasSuffix(got, "walstore.so") {
		t.Fatalf("archive_library = %q", got)
	}

	// A backup through the module: its .backup file arrives, proven by
	// walstored backup's end-to-end archiving check; walstored check
	// names archive_library, not the ignored archive_command.
	takeBackup(t, r, p)
	if res := admin(t, r, "check", "--pg", p.ConnString()); res.Code != 0 || strings.Contains(res.Stdout+res.Stderr, "elsewhere") {
		t.Fatalf("walstored check of a cluster archiving through the module: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	for i := 1; i <= 3; i++ {
		insertBatch(p, i, 5000)
		p.SwitchWAL()
	}
	last := p.SwitchWAL()
	p.WaitArchived(last, 2*time.Minute)
	if !fetchable(t, r, last) {
		t.Fatalf("%s archived by the module, but walfetch cannot fetch it", last)
	}

	// The agent crashes: each call fails with one line, PostgreSQL keeps
	// the files .ready; once the agent is back they all arrive.
	ag.Kill9()
	before := archiverFailures(p)
	insertBatch(p, 10, 5000)
	pending := p.SwitchWAL()
	waitArchiveFailure(t, p, before, `walstore: could not archive "`+pending+`": the walpush agent is not running`)
	ag.Start(t)
	insertBatch(p, 11, 100)
	last = p.SwitchWAL()
	p.WaitArchived(last, 2*time.Minute)
	for _, f := range []string{pending, last} {
		if !fetchable(t, r, f) {
			t.Fatalf("%s not in the archive after the agent came back", f)
		}
	}

	// walstored dies: the agent answers ERROR with walpush's words.
	ws.Kill9(t)
	before = archiverFailures(p)
	insertBatch(p, 12, 100)
	pending = p.SwitchWAL()
	waitArchiveFailure(t, p, before, `walstore: could not archive "`+pending+`": archive main:`)
	if !strings.Contains(ag.Log(), "push failed; PostgreSQL will retry") {
		t.Fatalf("the agent did not log the failed push:\n%s", ag.Log())
	}
	ws.Start(t)
	insertBatch(p, 13, 100)
	last = p.SwitchWAL()
	p.WaitArchived(last, 2*time.Minute)

	// A hung agent: the call times out (walstore.timeout), and a fast
	// shutdown completes anyway; the file stays .ready and is archived
	// after the next start.
	ag.Freeze()
	before = archiverFailures(p)
	insertBatch(p, 14, 5000)
	pending = p.SwitchWAL()
	waitArchiveFailure(t, p, before, `walstore: could not archive "`+pending+`": timed out waiting for the walpush agent`)
	p.Stop() // fails the test if the server does not stop within pg_ctl's 120 s
	if !strings.Contains(p.Log(), "the server is shutting down and the walpush agent did not answer") {
		t.Fatalf("shutdown did not give up on the hung agent:\n%s", p.Log())
	}
	if _, err := os.Stat(filepath.Join(p.Dir, "pg_wal", "archive_status", pending+".ready")); err != nil {
		t.Fatalf("%s is no longer .ready after the shutdown: %v", pending, err)
	}
	ag.Thaw()
	p.Start()
	insertBatch(p, 15, 100)
	last = p.SwitchWAL()
	p.WaitArchived(last, 2*time.Minute)
	if !fetchable(t, r, pending) {
		t.Fatalf("%s, left .ready at shutdown, not archived after the start", pending)
	}

	// Hostile local clients: a path outside this cluster's pg_wal, a name
	// that is no WAL file, a line that is no request, a file PostgreSQL
	// has not finished; and a peer of another uid.
	insertBatch(p, 16, 10)
	current := p.QueryString("SELECT pg_walfile_name(pg_current_wal_lsn())")
	for _, c := range []struct{ line, want string }{
		{"ARCHIVE 000000010000000000000001 /etc/passwd\n", "is not in the pg_wal of"},
		{"ARCHIVE ../../../etc/passwd " + filepath.Join(p.Dir, "pg_wal", "../../../etc/passwd") + "\n", "is not a WAL file name"},
		{"GET /etc/shadow\n", "unknown request"},
		{"ARCHIVE " + current + " " + filepath.Join(p.Dir, "pg_wal", current) + "\n", "has not marked it ready"},
	} {
		if ans := agentAsk(t, ag.Socket, c.line); !strings.HasPrefix(ans, "ERROR ") || !strings.Contains(ans, c.want) {
			t.Errorf("request %q: answer %q, want an ERROR naming %q", c.line, ans, c.want)
		}
	}
	if fi, err := os.Stat(ag.Socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent socket mode: %v %v, want 0600", fi.Mode(), err)
	}
	os.Chmod(ag.Socket, 0o666) // past the file mode: SO_PEERCRED still refuses
	out := testenv.Run(t, dir, nil, "runuser", "-u", "nobody", "--", "python3", "-c",
		"import socket,sys\ns=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\ntry: s.sendall(b'ARCHIVE 000000010000000000000001 x\\n')\nexcept OSError: pass\nprint(s.recv(1024).decode())", ag.Socket)
	if !strings.HasPrefix(out.Stdout, "ERROR ") || !strings.Contains(out.Stdout, "may not ask") {
		t.Fatalf("a peer of another uid: %q %q, want refused", out.Stdout, out.Stderr)
	}
	os.Chmod(ag.Socket, 0o600)

	// A restored copy, promoted: it archives its history and its new
	// timeline through its own agent.
	p.Exec("SELECT pg_create_restore_point('before-fork')")
	insertBatch(p, 20, 1000)
	p.WaitArchived(p.SwitchWAL(), 2*time.Minute)
	b := restore(t, r, dir, "promoted")
	bAgent := testenv.StartAgent(t, b.Dir, nil, r.args()...)
	b.AutoConf(append(bAgent.Conf(t, "5s"), "recovery_target_action = 'promote'")...)
	b.Start()
	b.WaitRecovered(3 * time.Minute)
	if tl := b.Timeline(); tl != 2 {
		t.Fatalf("the promoted copy is on timeline %d, want 2", tl)
	}
	insertBatch(b, 30, 100)
	bLast := b.SwitchWAL()
	b.WaitArchived(bLast, 2*time.Minute)
	if !fetchable(t, r, "00000002.history") || !fetchable(t, r, bLast) {
		t.Fatalf("the promoted copy's history or %s is not in the archive", bLast)
	}

	// A copy from whose restore_command the archive's timeline 2 history
	// is hidden promotes onto timeline 2 too, with another history: its
	// module call is refused as walpush's would be (split-brain fence).
	hide := filepath.Join(dir, "hide-history.sh")
	script := fmt.Sprintf("#!/bin/sh\ncase \"$1\" in *.history) exit 1;; esac\nexec %s --repo %s --archive main \"$1\" \"$2\"\n", testenv.Binaries(t).WalFetch, r.url)
	if err := os.WriteFile(hide, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := restore(t, r, dir, "hidden", "--target-name", "before-fork", "--target-action", "promote", "--target-timeline", "current")
	cAgent := testenv.StartAgent(t, c.Dir, nil, r.args()...)
	c.AutoConf(append(cAgent.Conf(t, "5s"), "restore_command = '"+hide+" %f %p'")...)
	c.Start()
	c.WaitRecovered(3 * time.Minute)
	if tl := c.Timeline(); tl != 2 {
		t.Fatalf("the copy with the history hidden is on timeline %d, want 2", tl)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(c.Log(), `walstore: could not archive "00000002.history"`) || !strings.Contains(c.Log(), "refusing to replace it") {
		if time.Now().After(deadline) {
			t.Fatalf("the hidden-history copy's history was not refused; its log:\n%s\nits agent's log:\n%s", c.Log(), cAgent.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := c.QueryInt("SELECT archived_count FROM pg_stat_archiver"); n != 0 {
		t.Fatalf("the fenced copy archived %d files", n)
	}
}
