package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
)

// TestPatroni is the README's Patroni section (its commands taken from
// the README's configuration block), run with Debian's patroni
// and etcd-server: two nodes archiving through walpush, a replica built
// from walstore by a create_replica_methods entry (walfetch restore as
// Patroni calls it), SIGKILL of the leader's Patroni and postmaster,
// failover, the old leader's automatic rejoin (pg_rewind), a switchover,
// and then a restore of the newest backup, which holds every acknowledged
// and archived row; verify is green.
func TestPatroni(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	r := repo{url: ws.URL}
	conf := filepath.Join(dir, "walstore.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("repo = %s\narchive = main\n", ws.URL)), 0o644)
	etcd := testenv.StartEtcd(t)
	// The commands are the README's, word for word, with this test's
	// binaries and config file in place of the installed ones; the
	// settings the README names are the ones testenv's patroni.yml has.
	block := readmeBlock(t, "bootstrap:")
	setting := func(key string) string {
		for _, l := range block {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), key+":"); ok {
				v = strings.TrimSpace(v)
				if i := strings.Index(v, " #"); i >= 0 {
					v = strings.TrimSpace(v[:i])
				}
				return strings.NewReplacer("/usr/local/bin/walpush", bins.WalPush, "/usr/local/bin/walfetch", bins.WalFetch, "/etc/walstore/walstore.conf", conf).Replace(v)
			}
		}
		t.Fatalf("the README's Patroni configuration has no %s", key)
		return ""
	}
	for key, want := range map[string]string{"use_pg_rewind": "true", "wal_log_hints": `"on"`, "archive_mode": `"on"`, "wal_level": "replica", "create_replica_methods": "[walstore, basebackup]"} {
		if got := setting(key); got != want {
			t.Fatalf("the README's Patroni configuration says %s: %s; the test runs %s", key, got, want)
		}
	}
	opt := testenv.PatroniOptions{
		Scope:          fmt.Sprintf("walstore-%d", time.Now().UnixNano()%1e9),
		ArchiveCommand: setting("archive_command"),
		RestoreCommand: setting("restore_command"),
		ReplicaMethod:  setting("command"),
	}
	if opt.ArchiveCommand != bins.WalPush+" --config "+conf+" %p" || !strings.HasPrefix(opt.ReplicaMethod, bins.WalFetch+" restore") {
		t.Fatalf("the README's commands did not map onto this test's binaries: %+v", opt)
	}
	n1 := testenv.StartPatroni(t, etcd, dir, "node1", opt)
	n1.WaitRole("primary", 3*time.Minute)
	c1 := n1.Cluster()
	c1.Exec(ledgerDDL)
	insertBatch(c1, 0, 1000)
	c1.WaitArchived(c1.SwitchWAL(), time.Minute)
	takeBackup(t, r, c1) // the first backup, made as the README says

	n2 := testenv.StartPatroni(t, etcd, dir, "node2", opt)
	n2.WaitRole("replica", 3*time.Minute)
	if log := n2.LogTail(200); !strings.Contains(log, "replica has been created using walstore") {
		t.Fatalf("node2's replica was not built by the walstore method:\n%s", log)
	}
	c2 := n2.Cluster()

	// Acknowledged and archived, and replayed on the replica: then the
	// leader's host dies.
	insertBatch(c1, 1, 2000)
	last := c1.SwitchWAL()
	c1.WaitArchived(last, time.Minute)
	lsn := c1.QueryString("SELECT pg_current_wal_lsn()::text")
	testenv.WaitFor(t, time.Minute, "node2 to replay the leader's WAL", func() bool {
		return c2.QueryInt(fmt.Sprintf("SELECT (pg_last_wal_replay_lsn() >= '%s')::int", lsn)) == 1
	})
	acked := c1.QueryInt("SELECT count(*) FROM ledger")
	n1.Kill9()
	n2.WaitRole("primary", 2*time.Minute)
	if got := c2.QueryInt("SELECT count(*) FROM ledger"); got != acked {
		t.Fatalf("after failover: %d rows, want the %d acknowledged and archived", got, acked)
	}

	// The old leader comes back: Patroni rewinds it and it follows.
	n1.Start()
	n1.WaitRole("replica", 3*time.Minute)
	insertBatch(c2, 2, 1000)
	c2.WaitArchived(c2.SwitchWAL(), time.Minute)

	// A switchover back to node1.
	n2.Switchover("node2", "node1")
	n1.WaitRole("primary", 2*time.Minute)
	n2.WaitRole("replica", 3*time.Minute)
	insertBatch(c1, 3, 1000)
	c1.WaitArchived(c1.SwitchWAL(), time.Minute)
	takeBackup(t, r, c1)
	insertBatch(c1, 4, 500)
	all := c1.QueryInt("SELECT count(*) FROM ledger")
	c1.WaitArchived(c1.SwitchWAL(), time.Minute)

	rc := restore(t, r, dir, "restored")
	rc.Start()
	rc.WaitRecovered(3 * time.Minute)
	if got := rc.QueryInt("SELECT count(*) FROM ledger"); got != all {
		t.Fatalf("restore of the newest backup: %d rows, want every acknowledged and archived one (%d)", got, all)
	}
	rc.Stop()
	v := admin(t, r, "verify")
	t.Logf("verify after failover, rejoin and switchover:\n%s", v.Stdout)
	if v.Code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
	// The crashed leader's last segment, archived before its rewind, is
	// an ordinary failover's, not a split brain to fence.
	if strings.Contains(v.Stdout, "fence it") {
		t.Fatalf("verify calls an ordinary failover a split brain:\n%s", v.Stdout)
	}
}
