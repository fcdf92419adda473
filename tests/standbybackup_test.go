package tests

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
)

// A base backup taken on a streaming standby (issue 16): no .backup file
// is archived for it, its stop position comes from its manifest, its WAL
// from the primary's archiving. It restores and recovers every row, verify
// passes, retention keeps it as the newest backup and removes the
// primary's older one, and it restores again after that. A restored
// cluster that was itself taken from a standby is a new primary here.
// The same holds for a backup of the standby read locally (--pgdata).
func TestBackupFromAStandby(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	r := repo{url: ws.URL}
	p := archivingCluster(t, dir, "primary", r, 1)
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 1000)
	first := takeBackup(t, r, p)

	s := restore(t, r, dir, "standby", "--standby")
	s.AutoConf(fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres'", p.Port))
	s.Start()
	insertBatch(p, 1, 2000)
	waitReplayed(t, s, p.QueryString("SELECT pg_current_wal_flush_lsn()::text"), time.Minute)

	// The standby's stop segment reaches the archive when the primary
	// finishes it: the primary keeps writing and switching meanwhile.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				p.Exec(`INSERT INTO ledger (batch) VALUES (99)`)
				p.SwitchWAL()
			}
		}
	}()
	id, res := takeBackupRes(t, r, s)
	t.Logf("backup from the standby: %s", strings.TrimSpace(res.Stdout))
	// And read locally (--pgdata): pg_backup_stop on the standby says
	// where it ends.
	local := parseRecord(t, localBackup(t, r, s))
	close(stop)
	<-done
	if !local.FromStandby || !local.ReadLocally || local.BackupFile != "" {
		t.Fatalf("local backup from the standby: %+v", local)
	}

	lst := admin(t, r, "list", "--json")
	var l struct {
		Backups []struct {
			ID          string `json:"id"`
			FromStandby bool   `json:"from_standby"`
			BackupFile  string `json:"backup_history_file"`
		} `json:"backups"`
	}
	if err := json.Unmarshal([]byte(lst.Stdout), &l); err != nil || len(l.Backups) != 3 || l.Backups[1].ID != id || !l.Backups[1].FromStandby || l.Backups[1].BackupFile != "" {
		t.Fatalf("list after a backup from the standby: %v\n%s", err, lst.Stdout)
	}

	insertBatch(p, 2, 1000)
	want := p.QueryInt("SELECT count(*) FROM ledger")
	archivedTo(t, p)
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify with a backup from a standby: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
	check := func(name, id string) {
		t.Helper()
		c := restore(t, r, dir, name, "--backup", id)
		c.Start()
		defer func() {
			if t.Failed() {
				log := c.Log()
				t.Logf("%s's log:\n%s", name, log[max(0, len(log)-4000):])
			}
		}()
		c.WaitRecovered(2 * time.Minute)
		if got := c.QueryInt("SELECT count(*) FROM ledger"); got != want {
			t.Fatalf("%s: restored from the standby's backup: %d rows, want %d", name, got, want)
		}
		c.Stop()
	}
	check("restored", id)
	check("restored-local", local.ID)

	if res := admin(t, r, "retain", "--keep-last", "1", "--json"); res.Code != 0 || !strings.Contains(res.Stdout, first) {
		t.Fatalf("retain --keep-last 1 (the standby's backup newest): exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify after retention: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
	check("restored-after-retention", local.ID)
}

// A backup of an archive-fed standby (restore_command only, no
// streaming), through pg_basebackup and read locally: both stop where the
// standby's replay was, both restore to every row, and a PITR from the
// local one stops at its target.
func TestBackupFromAnArchiveFedStandby(t *testing.T) {
	t.Parallel()
	st := newSite(t, 1, "archive_timeout = 1")
	dir, r, p := st.dir, st.r, st.p
	s := st.restoredStandby(t)
	s.Start()
	insertBatch(p, 1, 2000)
	waitReplayed(t, s, p.QueryString("SELECT pg_current_wal_flush_lsn()::text"), 2*time.Minute)

	streamed, _ := takeBackupRes(t, r, s)
	local := parseRecord(t, localBackup(t, r, s))
	if !local.FromStandby || local.BackupFile != "" {
		t.Fatalf("local backup of the archive-fed standby: %+v", local)
	}
	time.Sleep(1100 * time.Millisecond)
	target := p.QueryString("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
	before := p.QueryInt("SELECT count(*) FROM ledger")
	time.Sleep(1100 * time.Millisecond)
	insertBatch(p, 2, 1000)
	want := p.QueryInt("SELECT count(*) FROM ledger")
	archivedTo(t, p)
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
	for _, tc := range []struct {
		name string
		args []string
		rows int64
	}{
		{"streamed", []string{"--backup", streamed}, want},
		{"local", []string{"--backup", local.ID}, want},
		{"pitr", []string{"--backup", local.ID, "--target-time", target}, before},
	} {
		c := restore(t, r, dir, tc.name, tc.args...)
		c.AutoConf("archive_mode = off")
		c.Start()
		c.WaitRecovered(2 * time.Minute)
		if got := c.QueryInt("SELECT count(*) FROM ledger"); got != tc.rows {
			t.Fatalf("%s: %d rows, want %d", tc.name, got, tc.rows)
		}
		c.Stop()
	}
}
