package push_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/client/push"
	"github.com/walstore/walstore/client/worker"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal"
	"github.com/walstore/walstore/wal/waltest"
)

// fakePGWal lays segments into a pg_wal with a .ready file each.
func fakePGWal(t *testing.T, segs []string) string {
	pgdata := t.TempDir()
	dir := filepath.Join(pgdata, "pg_wal")
	os.MkdirAll(filepath.Join(dir, "archive_status"), 0o700)
	// A live "postmaster" (this test process), or the pusher would stop.
	os.WriteFile(filepath.Join(pgdata, "postmaster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		os.WriteFile(filepath.Join(dir, filepath.Base(s)), b, 0o600)
		os.WriteFile(filepath.Join(dir, "archive_status", filepath.Base(s)+".ready"), nil, 0o600)
	}
	return dir
}

func config(t *testing.T) (push.Config, *archive.Archive) {
	fs, err := filestore.Open(t.TempDir(), filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := archive.New(fs, "main")
	return push.Config{
		Open:        func(context.Context) (*archive.Archive, error) { return a, nil },
		Repo:        fs.Describe(),
		ArchiveName: "main",
		Jobs:        4,
		Timeout:     time.Minute,
	}, a
}

// A pusher left with only files that keep failing (here a conflict) exits
// once idle instead of retrying them forever; PostgreSQL's own calls
// report the failure.
func TestPusherExitsWhenOnlyFailuresRemain(t *testing.T) {
	segs := segments(t, 1)
	walDir := fakePGWal(t, segs)
	cfg, a := config(t)
	p := filepath.Join(walDir, filepath.Base(segs[0]))
	b, _ := os.ReadFile(p)
	nb, _ := wal.ParseName(filepath.Base(p))
	b = waltest.OtherSegment(waltest.SystemID, nb, int64(len(b)), 1)
	hdr, _ := wal.ParsePageHeader(b)
	enc := envelope.NewEncoder()
	enc.SystemID = hdr.SystemID
	n, _ := wal.ParseName(filepath.Base(p))
	other, _ := enc.EncodeBytes(b, a.Layout.WAL(n))
	if _, err := a.PutWAL(context.Background(), n, other); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { push.RunPusher(context.Background(), cfg, walDir); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * push.PusherIdle):
		t.Fatal("the pusher is still running with nothing but a failing file")
	}
}

// Files pushed ahead are vouched for only while they are the same file: a
// file replaced on disk afterwards is pushed again, never falsely skipped;
// a marker the pusher will not clean up goes with the call it answers.
func TestPushAheadThenReplacedFileIsPushedAgain(t *testing.T) {
	segs := segments(t, 3)
	walDir := fakePGWal(t, segs)
	cfg, _ := config(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { push.RunPusher(ctx, cfg, walDir); close(done) }()
	testenv.WaitFor(t, time.Minute, "three push-ahead markers", func() bool {
		m, _ := filepath.Glob(filepath.Join(worker.StateDir(filepath.Dir(walDir)), "pushed", "0*"))
		return len(m) == 3
	})
	cancel()
	<-done
	a, b, c := filepath.Join(walDir, filepath.Base(segs[0])), filepath.Join(walDir, filepath.Base(segs[1])), filepath.Join(walDir, filepath.Base(segs[2]))

	// Unchanged: answered from the marker.
	res, err := push.Push(context.Background(), cfg, a)
	if err != nil || !res.FromMarker {
		t.Fatalf("unchanged file: %+v %v, want an answer from its marker", res, err)
	}
	// With no pusher running, that call was the last use of the marker,
	// and nothing else would remove it.
	if _, err := os.Stat(filepath.Join(worker.StateDir(filepath.Dir(walDir)), "pushed", filepath.Base(a))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker of %s left after the call it answered, with no pusher running: %v", filepath.Base(a), err)
	}
	// Same bytes, new file (new inode): pushed again, already archived.
	data, _ := os.ReadFile(b)
	os.Remove(b)
	os.WriteFile(b, data, 0o600)
	res, err = push.Push(context.Background(), cfg, b)
	if err != nil || res.FromMarker || res.Outcome != archive.AlreadyStored {
		t.Fatalf("replaced identical file: %+v %v, want a real push answering already archived", res, err)
	}
	// Other bytes in place: pushed again, and refused as a conflict.
	data, _ = os.ReadFile(c)
	nc, _ := wal.ParseName(filepath.Base(c))
	data = waltest.OtherSegment(waltest.SystemID, nc, int64(len(data)), 1)
	time.Sleep(10 * time.Millisecond) // a new mtime even on coarse clocks
	os.WriteFile(c, data, 0o600)
	res, err = push.Push(context.Background(), cfg, c)
	if !errors.Is(err, errkind.ErrConflict) || res.FromMarker {
		t.Fatalf("rewritten file: %+v %v, want a conflict from a real push", res, err)
	}
}

// segments writes n synthetic 1 MiB segments (valid long page headers,
// WAL-like content) from 000000010000000000000002 on.
func segments(t *testing.T, n int) []string {
	t.Helper()
	segs, err := waltest.WriteSegments(t.TempDir(), waltest.Name("000000010000000000000002"), n, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}
