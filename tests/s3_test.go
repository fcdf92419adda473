package tests

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/s3store"
	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal"
)

// walpush → walstored → MinIO → walstored → walfetch.
func TestPITRThroughWalstoredOnMinIO(t *testing.T) {
	t.Parallel()
	m := testenv.SharedMinIO(t)
	ws := testenv.StartWalstored(t, m.Env(), "--store", m.URL("pitr-walstored"))
	pitrScenario(t, repo{url: ws.URL})
}

// The clients talk to MinIO directly (s3://), no daemon.
func TestPITRDirectS3(t *testing.T) {
	t.Parallel()
	m := testenv.SharedMinIO(t)
	testenv.InitRepo(t, m.URL("pitr-direct"), m.Env())
	pitrScenario(t, repo{url: m.URL("pitr-direct"), env: m.Env()})
}

// verifySegments reads back every segment from first to last (one
// timeline) and checks each against its SHA-256.
func verifySegments(t *testing.T, a *archive.Archive, first, last string, segSize int64) {
	t.Helper()
	n, _ := wal.ParseName(first)
	end, _ := wal.ParseName(last)
	ctx := context.Background()
	count := 0
	for ; wal.Compare(n, end) <= 0; n = n.Next(segSize) {
		_, rc, err := a.OpenWAL(ctx, n)
		if err != nil {
			t.Fatalf("segment %s: %v", n, err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("segment %s does not verify: %v", n, err)
		}
		count++
	}
	t.Logf("verified %d segments %s..%s", count, first, last)
}

// MinIO stops while PostgreSQL archives: walpush fails within its deadline
// (not hanging while pg_wal fills), nothing partial becomes visible, and
// once MinIO is back archiving catches up with every segment intact.
func TestMinIOOutageWhileArchiving(t *testing.T) {
	t.Parallel()
	for _, via := range []string{"direct", "walstored"} {
		t.Run(via, func(t *testing.T) {
			bins := testenv.Binaries(t)
			m := testenv.StartMinIO(t)
			testenv.InitRepo(t, m.URL("outage"), m.Env())
			r := repo{url: m.URL("outage"), extra: []string{"--timeout", "10s"}, env: m.Env()}
			if via == "walstored" {
				ws := testenv.StartWalstored(t, m.Env(), "--store", m.URL("outage")+"&timeout=5s")
				r = repo{url: ws.URL, extra: []string{"--timeout", "10s"}}
			}
			dir := testenv.Dir(t)
			c := archivingCluster(t, dir, "primary", r, 1)
			c.Start()
			c.Exec(ledgerDDL)
			first := c.SwitchWAL()
			insertBatch(c, 0, 3000)
			c.WaitArchived(c.SwitchWAL(), time.Minute)

			m.Stop(t)
			insertBatch(c, 1, 3000)
			waiting := c.SwitchWAL()
			testenv.WaitFor(t, time.Minute, "the archiver to report a failure", func() bool {
				return c.QueryInt("SELECT failed_count FROM pg_stat_archiver") > 0
			})
			// The same call PostgreSQL makes, timed.
			seg := filepath.Join(c.Dir, "pg_wal", waiting)
			res := testenv.Run(t, c.Dir, r.env, bins.WalPush, r.args("--jobs", "1", seg)...)
			if res.Code == 0 {
				t.Fatalf("walpush succeeded with MinIO stopped")
			}
			if res.Took > 20*time.Second {
				t.Fatalf("walpush took %v with MinIO stopped; its deadline is 10s", res.Took)
			}
			if strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 || !strings.Contains(res.Stderr, waiting) {
				t.Fatalf("want one line naming the file, got %q", res.Stderr)
			}
			t.Logf("walpush with MinIO down: exit %d after %v: %s", res.Code, res.Took.Round(time.Millisecond), strings.TrimSpace(res.Stderr))

			m.Restart(t)
			insertBatch(c, 2, 3000)
			last := c.SwitchWAL()
			c.WaitArchived(last, 2*time.Minute)

			s3, err := s3store.Open(context.Background(), m.URL("outage"), s3store.Options{AccessKey: m.AccessKey, SecretKey: m.SecretKey})
			if err != nil {
				t.Fatal(err)
			}
			a, _ := archive.New(s3, "main")
			verifySegments(t, a, first, last, 1<<20)
			// No object is partial, no upload is left open.
			err = s3.List(context.Background(), "main/", func(i store.Info) error {
				hdr, err := archive.StatHeader(context.Background(), s3, i.Key)
				if err != nil || hdr.ObjectSize() != i.Size {
					return fmt.Errorf("%s: %d bytes, header %+v, %v", i.Key, i.Size, hdr, err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for u := range m.Client().ListIncompleteUploads(context.Background(), m.Bucket, "outage/", true) {
				t.Errorf("incomplete upload left: %s %v", u.Key, u.Err)
			}
			_ = minio.ObjectInfo{}
			_ = os.Remove
		})
	}
}
