package push_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/filestore"
	"github.com/walstore/walstore/internal/testenv"
	"github.com/walstore/walstore/push"
)

// fakePGWal lays segments into a pg_wal with a .ready file each.
func fakePGWal(t *testing.T, segs []string) string {
	wal := filepath.Join(t.TempDir(), "pg_wal")
	os.MkdirAll(filepath.Join(wal, "archive_status"), 0o700)
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		os.WriteFile(filepath.Join(wal, filepath.Base(s)), b, 0o600)
		os.WriteFile(filepath.Join(wal, "archive_status", filepath.Base(s)+".ready"), nil, 0o600)
	}
	return wal
}

func config(t *testing.T) (push.Config, *archive.Archive) {
	fs, err := filestore.Open(t.TempDir())
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
	segs := testenv.RealSegments(t, 1, 1)
	wal := fakePGWal(t, segs)
	cfg, a := config(t)
	p := filepath.Join(wal, filepath.Base(segs[0]))
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xFF
	hdr, _ := archive.ParsePageHeader(b)
	enc := archive.NewEncoder()
	enc.SystemID = hdr.SystemID
	other, _ := enc.EncodeBytes(b)
	n, _ := archive.ParseName(filepath.Base(p))
	if _, err := a.PutWAL(context.Background(), n, other); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { push.RunPusher(context.Background(), cfg, wal); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * push.PusherIdle):
		t.Fatal("the pusher is still running with nothing but a failing file")
	}
}

// Files pushed ahead are vouched for only while they are the same file: a
// file replaced on disk afterwards is pushed again, never falsely skipped.
func TestPushAheadThenReplacedFileIsPushedAgain(t *testing.T) {
	segs := testenv.RealSegments(t, 3, 1)
	wal := fakePGWal(t, segs)
	cfg, _ := config(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { push.RunPusher(ctx, cfg, wal); close(done) }()
	testenv.WaitFor(t, time.Minute, "three push-ahead markers", func() bool {
		m, _ := filepath.Glob(filepath.Join(wal, "walstore", "pushed", "0*"))
		return len(m) == 3
	})
	cancel()
	<-done
	a, b, c := filepath.Join(wal, filepath.Base(segs[0])), filepath.Join(wal, filepath.Base(segs[1])), filepath.Join(wal, filepath.Base(segs[2]))

	// Unchanged: answered from the marker.
	res, err := push.Push(context.Background(), cfg, a)
	if err != nil || !res.FromMarker {
		t.Fatalf("unchanged file: %+v %v, want an answer from its marker", res, err)
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
	data[len(data)/2] ^= 0xFF
	time.Sleep(10 * time.Millisecond) // a new mtime even on coarse clocks
	os.WriteFile(c, data, 0o600)
	res, err = push.Push(context.Background(), cfg, c)
	if !errors.Is(err, archive.ErrConflict) || res.FromMarker {
		t.Fatalf("rewritten file: %+v %v, want a conflict from a real push", res, err)
	}
}
