package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
)

// Zero data loss (issue 17): walstored streams WAL from the cluster as a
// (synchronous) standby would.

// receiving starts walstored on a file store, receiving archive main
// from the clusters given (connection strings).
func receiving(t *testing.T, dir string, conninfos ...string) *testenv.Walstored {
	args := []string{"--store", "file://" + filepath.Join(dir, "repo"), "--receive-dir", filepath.Join(dir, "receive"), "--receive-create-slot", "--scan-interval", "2s"}
	for _, c := range conninfos {
		args = append(args, "--receive", "main="+c)
	}
	return testenv.StartWalstored(t, nil, args...)
}

func conninfo(c *testenv.Cluster) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres", c.Port)
}

// lsnBytes is a position as a number.
func lsnBytes(s string) float64 {
	var hi, lo uint64
	fmt.Sscanf(s, "%X/%X", &hi, &lo)
	return float64(hi<<32 | lo)
}

// flushedTo waits until walstored's receiver flushed WAL up to lsn.
func flushedTo(t *testing.T, ws *testenv.Walstored, lsn string) {
	t.Helper()
	testenv.WaitFor(t, time.Minute, "the receiver to flush up to "+lsn, func() bool {
		var got float64
		fmt.Sscanf(metric(t, ws, `walstore_receiver_flushed_lsn_bytes{archive="main"}`), "%g", &got)
		return got >= lsnBytes(lsn)
	})
}

// metric returns the value of a metric line that starts with prefix, or
// "" if there is none.
func metric(t *testing.T, ws *testenv.Walstored, prefix string) string {
	for _, l := range strings.Split(metricsText(t, ws.URL, ""), "\n") {
		if strings.HasPrefix(l, prefix+" ") {
			return strings.TrimPrefix(l, prefix+" ")
		}
	}
	return ""
}

// Synchronous: the primary waits for walstored's flush of every commit.
// The primary is killed and its data directory removed right after the
// last commit returned; a restore of the newest backup with the archive
// and the received partial segment has every committed row. Five times.
func TestReceiverSynchronousLosesNothing(t *testing.T) {
	t.Parallel()
	for i := range 5 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			dir := testenv.Dir(t)
			p := testenv.NewCluster(t, dir, "primary", testenv.ClusterOptions{WalSegSizeMB: 1})
			ws := receiving(t, dir, conninfo(p))
			r := repo{url: ws.URL}
			bins := testenv.Binaries(t)
			p.WriteConf("archive_mode = on", fmt.Sprintf("archive_command = '%s'", r.archiveCommand(bins)),
				"synchronous_standby_names = 'walstored'", "synchronous_commit = on")
			p.Start()
			testenv.WaitFor(t, time.Minute, "the receiver to stream as the synchronous standby", func() bool {
				return p.QueryString("SELECT coalesce(string_agg(sync_state, ','), '') FROM pg_stat_replication WHERE application_name = 'walstored'") == "sync"
			})
			p.Exec(ledgerDDL)
			insertBatch(p, 0, 500)
			takeBackup(t, r, p)
			for b := 1; b <= 20; b++ {
				insertBatch(p, b, 50+b*7) // 20 commits, none switched out
			}
			committed := p.QueryInt("SELECT count(*) FROM ledger")
			p.Kill9()
			p.Wipe()

			c := restore(t, r, dir, "restored")
			c.AutoConf("archive_mode = off", "synchronous_standby_names = ''")
			c.Start()
			c.WaitRecovered(2 * time.Minute)
			if got := c.QueryInt("SELECT count(*) FROM ledger"); got != committed {
				t.Fatalf("restored %d rows; %d were committed before the primary was lost\n%s", got, committed, c.Log())
			}
			if !strings.Contains(ws.Log(), "outcome=received") {
				t.Fatalf("the restore did not read the segment being received (the test proves nothing):\n%s", ws.Log())
			}
		})
	}
}

// Both paths at once (archive_command and the receiver), and walstored
// killed with SIGKILL while it streams: every segment is stored once,
// byte-identical whichever path came first (no conflict), the receiver
// starts again from its slot without a gap, and verify passes.
func TestReceiverAndArchiveCommandTogether(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	p := testenv.NewCluster(t, dir, "primary", testenv.ClusterOptions{WalSegSizeMB: 1})
	ws := receiving(t, dir, conninfo(p))
	r := repo{url: ws.URL}
	p.WriteConf("archive_mode = on", fmt.Sprintf("archive_command = '%s'", r.archiveCommand(testenv.Binaries(t))))
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 500)
	takeBackup(t, r, p)
	for i := 1; i <= 10; i++ {
		insertBatch(p, i, 8000)
		if i == 5 {
			ws.Kill9(t)             // while it streams
			insertBatch(p, i, 8000) // written while walstored is down
			ws.Start(t)
		}
	}
	last := archivedTo(t, p)
	flushedTo(t, ws, last)
	testenv.WaitFor(t, time.Minute, "the receiver to complete its segments", func() bool {
		return metric(t, ws, `walstore_receiver_segments_total{archive="main",outcome="already_archived"}`) != "0" &&
			metric(t, ws, `walstore_receiver_segments_total{archive="main",outcome="already_archived"}`) != ""
	})
	if c := metric(t, ws, `walstore_receiver_segments_total{archive="main",outcome="conflict"}`); c != "0" {
		t.Fatalf("receiver conflicts: %s\n%s", c, ws.Log())
	}
	if strings.Contains(ws.Log(), "refused to overwrite") {
		t.Fatalf("a conflict in walstored's log:\n%s", ws.Log())
	}
	if n := p.QueryInt("SELECT failed_count FROM pg_stat_archiver"); n > 3 {
		t.Fatalf("archive_command failed %d times (only while walstored was down is expected)", n)
	}
	if v := admin(t, r, "verify"); v.Code != 0 {
		t.Fatalf("verify: exit %d\n%s", v.Code, v.Stdout)
	}
	var stored, already int
	fmt.Sscanf(metric(t, ws, `walstore_receiver_segments_total{archive="main",outcome="stored"}`), "%d", &stored)
	fmt.Sscanf(metric(t, ws, `walstore_receiver_segments_total{archive="main",outcome="already_archived"}`), "%d", &already)
	if stored+already < 5 {
		t.Fatalf("the receiver completed only %d segments since its restart", stored+already)
	}
	t.Logf("receiver: %s segments stored first, %s already archived by walpush", metric(t, ws, `walstore_receiver_segments_total{archive="main",outcome="stored"}`),
		metric(t, ws, `walstore_receiver_segments_total{archive="main",outcome="already_archived"}`))
}

// The receiver follows a promotion: the old primary stops, the standby
// in its connection list is promoted, and the receiver streams timeline
// 2 from it (its slot made there), the archive continuous across the
// switch; a restore to the end of the archive has every row.
func TestReceiverFollowsPromotion(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	p := testenv.NewCluster(t, dir, "primary", testenv.ClusterOptions{WalSegSizeMB: 1})
	// The standby will listen on a port chosen now, so that the receiver
	// knows both servers from the start.
	standbyPort := testenv.FreePort(t)
	ws := receiving(t, dir, conninfo(p), fmt.Sprintf("host=127.0.0.1 port=%d user=postgres", standbyPort))
	r := repo{url: ws.URL}
	p.WriteConf("archive_mode = on", fmt.Sprintf("archive_command = '%s'", r.archiveCommand(testenv.Binaries(t))), "wal_log_hints = on")
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 1000)
	takeBackup(t, r, p)
	s := restore(t, r, dir, "standby", "--standby", "--wait", "2s")
	s.AutoConf(fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=standby1'", p.Port), fmt.Sprintf("port = %d", standbyPort))
	s.Port = standbyPort
	s.Start()
	insertBatch(p, 1, 2000)
	end := p.QueryString("SELECT pg_current_wal_flush_lsn()::text")
	waitReplayed(t, s, end, time.Minute)
	flushedTo(t, ws, end)
	p.Stop()
	s.Promote()
	insertBatch(s, 2, 2000)
	s.SwitchWAL()
	insertBatch(s, 3, 500)
	rows := s.QueryInt("SELECT count(*) FROM ledger")
	testenv.WaitFor(t, 2*time.Minute, "the receiver to stream timeline 2", func() bool {
		return metric(t, ws, `walstore_receiver_timeline{archive="main"}`) == "2" && metric(t, ws, `walstore_receiver_connected{archive="main"}`) == "1"
	})
	flushedTo(t, ws, s.QueryString("SELECT pg_current_wal_flush_lsn()::text"))
	if n := s.QueryInt("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walstore_main'"); n != 1 {
		t.Fatalf("no slot for the receiver on the promoted server")
	}
	s.Kill9()
	c := restore(t, r, dir, "restored")
	c.AutoConf("archive_mode = off")
	c.Start()
	c.WaitRecovered(2 * time.Minute)
	if got := c.QueryInt("SELECT count(*) FROM ledger"); got != rows {
		t.Fatalf("restore to the end of the archive after the promoted primary was lost: %d rows, want %d\n%s", got, rows, c.Log())
	}
}

// With synchronous_standby_names = 'ANY 1 (walstored, standby1)' a
// stopped walstored does not stop commits: the streaming standby
// acknowledges them.
func TestReceiverStoppedQuorumGoesOn(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	p := testenv.NewCluster(t, dir, "primary", testenv.ClusterOptions{WalSegSizeMB: 1})
	ws := receiving(t, dir, conninfo(p))
	r := repo{url: ws.URL}
	p.WriteConf("archive_mode = on", fmt.Sprintf("archive_command = '%s'", r.archiveCommand(testenv.Binaries(t))),
		"synchronous_standby_names = 'ANY 1 (walstored, standby1)'")
	p.Start()
	p.Exec(ledgerDDL)
	takeBackup(t, r, p)
	s := restore(t, r, dir, "standby", "--standby")
	s.AutoConf(fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=standby1'", p.Port))
	s.Start()
	waitReplayed(t, s, p.QueryString("SELECT pg_current_wal_flush_lsn()::text"), time.Minute)
	ws.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := p.Conn()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `INSERT INTO ledger (batch) SELECT 9 FROM generate_series(1, 100)`); err != nil {
		t.Fatalf("commit with walstored stopped and a quorum of one: %v", err)
	}
}

// A slot that PostgreSQL invalidated (max_slot_wal_keep_size) while
// walstored was down: the receiver does not start again from a later
// position, which would leave a gap; it says so in its log, in a metric
// and in /v1/status, and the archive stays as it was.
func TestReceiverSlotInvalidatedSaysSo(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	p := testenv.NewCluster(t, dir, "primary", testenv.ClusterOptions{WalSegSizeMB: 1, Conf: []string{"max_slot_wal_keep_size = '2MB'"}})
	p.Start()
	ws := receiving(t, dir, conninfo(p))
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 100)
	flushedTo(t, ws, p.QueryString("SELECT pg_current_wal_flush_lsn()::text"))
	ws.Stop(t)
	testenv.WaitFor(t, time.Minute, "PostgreSQL to invalidate the slot", func() bool {
		insertBatch(p, 1, 2000)
		p.SwitchWAL()
		p.Exec("CHECKPOINT")
		return p.QueryString("SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = 'walstore_main'") == "lost"
	})
	ws.Start(t)
	testenv.WaitFor(t, time.Minute, "the receiver to report the invalidated slot", func() bool {
		return metric(t, ws, `walstore_receiver_slot_invalidated{archive="main"}`) == "1"
	})
	if !strings.Contains(ws.Log(), "no longer holds WAL") {
		t.Fatalf("walstored's log does not say the slot lost WAL:\n%s", ws.Log())
	}
	if metric(t, ws, `walstore_receiver_connected{archive="main"}`) != "0" {
		t.Fatal("the receiver streams again from an invalidated slot")
	}
	page, err := http.Get(ws.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if page.StatusCode != 200 || !strings.Contains(string(body), "not streaming") || !strings.Contains(string(body), "slot invalidated") {
		t.Fatalf("the status page does not show the receiver's invalidated slot: %d\n%s", page.StatusCode, body)
	}
	resp, err := http.Get(ws.URL + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var status struct {
		Archives []struct {
			Receiver *struct {
				Connected bool   `json:"connected"`
				SlotState string `json:"slot_state"`
				LastError string `json:"last_error"`
			} `json:"receiver"`
		} `json:"archives"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		t.Fatal(err)
	}
	if len(status.Archives) != 1 || status.Archives[0].Receiver == nil || status.Archives[0].Receiver.SlotState != "invalidated" ||
		!strings.Contains(status.Archives[0].Receiver.LastError, "no longer holds WAL") {
		t.Fatalf("/v1/status does not show the invalidated slot: %+v", status)
	}
}
