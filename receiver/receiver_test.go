package receiver

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/wal"
	"github.com/walstore/walstore/wal/waltest"
)

const segSize = 1 << 20

func newTestReceiver(t *testing.T, dir string) (*Receiver, *archive.Archive, *[]wal.Name) {
	t.Helper()
	a, err := archive.New(memstore.New(), "main")
	if err != nil {
		t.Fatal(err)
	}
	var published []wal.Name
	r, err := New(Options{Archive: a, ConnInfos: []string{"host=db1"}, Dir: dir,
		Publish: func(ctx context.Context, n wal.Name, obj *envelope.Object) (archive.Outcome, error) {
			published = append(published, n)
			return a.PutWAL(ctx, n, obj)
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.segSz = segSize
	return r, a, &published
}

func decode(t *testing.T, obj *envelope.Object, name string) []byte {
	t.Helper()
	_, rc, err := envelope.Open(bytes.NewReader(obj.Bytes()), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// WAL written in messages that straddle a segment boundary becomes one
// complete segment, byte for byte, stored like walpush stores it, and
// a partial of the next one, served zero-padded only when asked for.
func TestWriteCompletePublishAndServe(t *testing.T) {
	dir := t.TempDir()
	r, a, published := newTestReceiver(t, dir)
	n1, n2 := waltest.Name("000000010000000000000003"), waltest.Name("000000010000000000000004")
	seg1 := waltest.Segment(7, n1, segSize)
	seg2 := waltest.Segment(7, n2, segSize)[:300000]
	stream := append(append([]byte{}, seg1...), seg2...)
	pos := n1.StartLSN(segSize)
	for len(stream) > 0 {
		chunk := stream[:min(len(stream), 128<<10+77)] // messages do not end on boundaries
		end, err := r.write(1, pos, chunk)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.flush(); err != nil {
			t.Fatal(err)
		}
		pos, stream = end, stream[len(chunk):]
	}
	if _, err := os.Stat(filepath.Join(dir, "main", n1.String())); err != nil {
		t.Fatalf("the full segment is not a complete file: %v", err)
	}
	if _, err := r.Received(n2, false); err == nil {
		t.Fatal("the segment being received was served to a reader that did not ask for partials")
	}
	obj, err := r.Received(n2, true)
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, obj, a.Layout.WAL(n2))
	if len(got) != segSize || !bytes.Equal(got[:len(seg2)], seg2) || !bytes.Equal(got[len(seg2):], make([]byte, segSize-len(seg2))) {
		t.Fatal("the partial is not the received bytes, zero-padded")
	}
	name, path, ok := r.nextComplete()
	if !ok || name != n1 {
		t.Fatalf("next complete: %v %v", name, ok)
	}
	if err := r.publish(context.Background(), name, path); err != nil {
		t.Fatal(err)
	}
	if len(*published) != 1 || (*published)[0] != n1 {
		t.Fatalf("published %v", *published)
	}
	_, rc, err := a.OpenWAL(context.Background(), n1)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(stored, seg1) {
		t.Fatal("the stored segment is not the streamed one")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("the local copy of a stored segment was kept")
	}

	// A restart finds the partial again, and starts at its segment.
	r2, _, _ := newTestReceiver(t, dir)
	if n, ok := r2.newestLocal(); !ok || n != n2 {
		t.Fatalf("after a restart the newest local segment is %v", n)
	}
	if _, partial := r2.isPartial(n2); !partial {
		t.Fatal("the segment being received is not a partial after a restart")
	}
}

func TestNamesAndSizes(t *testing.T) {
	for in, want := range map[string]int64{"16MB": 16 << 20, "1MB": 1 << 20, "1GB": 1 << 30, "512kB": 512 << 10} {
		if got, err := pgSize(in); err != nil || got != want {
			t.Errorf("pgSize(%q) = %d, %v", in, got, err)
		}
	}
	if got := DefaultSlot("Billing-EU.2"); got != "walstore_billing_eu_2" {
		t.Errorf("DefaultSlot = %q", got)
	}
	for _, bad := range []string{"", "Has-Upper", "a b", string(make([]byte, 64))} {
		if validSlot(bad) == nil {
			t.Errorf("slot name %q accepted", bad)
		}
	}
}
