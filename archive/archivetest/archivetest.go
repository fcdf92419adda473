// Package archivetest is the conformance suite of tier 2: what every
// repository (an archive on any store, directly or through walstored)
// must do with WAL and backups. It writes synthetic segments
// (wal/waltest), so it needs no PostgreSQL; the byte-level behaviour of
// the stores underneath is proven by store/storetest.
package archivetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
	"github.com/walstore/walstore/wal/waltest"
)

const segSize = 1 << 20

// Run runs every case against archives in stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, c := range []struct {
		name string
		fn   func(*testing.T, store.Store, string)
	}{
		{"PushIsIdempotent", testIdempotent},
		{"OneSystemPerArchive", testBinding},
		{"BoundToItsName", testBoundToName},
		{"Encrypted", testEncrypted},
		{"BackupRecords", testBackupRecords},
		{"ListWALInOrder", testListWAL},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newStore(t), Name()) })
	}
}

// Name returns a fresh archive name.
func Name() string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("at%x", b)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// Segment encodes synthetic segment n of system sysid for archive a.
func Segment(t testing.TB, a *archive.Archive, sysid uint64, n wal.Name) *envelope.Object {
	t.Helper()
	enc := a.Encoder()
	enc.SystemID = sysid
	obj, err := a.EncodeWAL(enc, bytes.NewReader(waltest.Segment(sysid, n, segSize)), segSize, n)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func open(t *testing.T, s store.Store, name string) *archive.Archive {
	a, err := archive.New(s, name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func testIdempotent(t *testing.T, s store.Store, name string) {
	a := open(t, s, name)
	n := waltest.Name("000000010000000000000003")
	obj := Segment(t, a, waltest.SystemID, n)
	if out, err := a.PutWAL(ctx(t), n, obj); err != nil || out != archive.Stored {
		t.Fatalf("first push: %v %v", out, err)
	}
	if out, err := a.PutWAL(ctx(t), n, obj); err != nil || out != archive.AlreadyStored {
		t.Fatalf("same content again: %v %v, want already archived", out, err)
	}
	raw := waltest.OtherSegment(waltest.SystemID, n, segSize, 1)
	enc := a.Encoder()
	enc.SystemID = waltest.SystemID
	other, _ := a.EncodeWAL(enc, bytes.NewReader(raw), segSize, n)
	_, err := a.PutWAL(ctx(t), n, other)
	var ce *archive.ConflictError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), obj.Header.Digest.String()) || !strings.Contains(err.Error(), other.Header.Digest.String()) {
		t.Fatalf("other content: %v, want a conflict naming both digests", err)
	}
	_, rc, err := a.OpenWAL(ctx(t), n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, waltest.Segment(waltest.SystemID, n, segSize)) {
		t.Fatalf("the stored segment changed: %v", err)
	}
}

func testBinding(t *testing.T, s store.Store, name string) {
	a := open(t, s, name)
	n := waltest.Name("000000010000000000000003")
	if _, err := a.PutWAL(ctx(t), n, Segment(t, a, waltest.SystemID, n)); err != nil {
		t.Fatal(err)
	}
	b := open(t, s, name) // a fresh handle: nothing remembered
	m := n.Next(segSize)
	if _, err := b.PutWAL(ctx(t), m, Segment(t, b, waltest.SystemID+1, m)); !errors.Is(err, errkind.ErrWrongSystem) {
		t.Fatalf("a segment of another system: %v, want ErrWrongSystem", err)
	}
	if id, err := b.SystemID(ctx(t)); err != nil || id != waltest.SystemID {
		t.Fatalf("binding: %d %v", id, err)
	}
}

// An object stored under another name than the one it was written for is
// refused on the way in (walstored) or read back as corrupt (stores
// without a door): never served as the other file.
func testBoundToName(t *testing.T, s store.Store, name string) {
	a := open(t, s, name)
	h2, h3 := wal.Name{Kind: wal.History, TLI: 2}, wal.Name{Kind: wal.History, TLI: 3}
	obj, err := a.Encoder().EncodeBytes(waltest.History(wal.HistoryEntry{TLI: 1, SwitchPoint: 3 << 20}), a.Layout.WAL(h2))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Put(ctx(t), a.Layout.WAL(h3), store.Bytes(obj.Bytes()))
	if err != nil {
		if !errkind.Permanent(err) {
			t.Fatalf("a misnamed object: %v, want a refusal", err)
		}
		return
	}
	if _, _, err := a.OpenWAL(ctx(t), h3); !errors.Is(err, errkind.ErrCorrupt) {
		t.Fatalf("reading 00000002.history stored as 00000003.history: %v, want ErrCorrupt", err)
	}
}

func testEncrypted(t *testing.T, s store.Store, name string) {
	text, _ := envelope.NewKeyText()
	k, _ := envelope.ParseKey([]byte(text))
	a := open(t, s, name)
	a.Keys = &envelope.Keyring{Encrypt: k}
	n := waltest.Name("000000010000000000000004")
	if _, err := a.PutWAL(ctx(t), n, Segment(t, a, waltest.SystemID, n)); err != nil {
		t.Fatal(err)
	}
	_, rc, err := a.OpenWAL(ctx(t), n)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, waltest.Segment(waltest.SystemID, n, segSize)) {
		t.Fatal("encrypted round trip changed the segment")
	}
	plain := open(t, s, name)
	if _, _, err := plain.OpenWAL(ctx(t), n); !errors.Is(err, errkind.ErrKey) {
		t.Fatalf("read without the key: %v, want ErrKey", err)
	}
}

func testBackupRecords(t *testing.T, s store.Store, name string) {
	a := open(t, s, name)
	id := archive.NewBackupID(time.Now())
	part := a.Layout.Backup(id, archive.PartPrefix+"00000")
	obj, _ := a.Encoder().EncodeBytes([]byte("tar bytes"), part)
	if _, err := archive.PutObject(ctx(t), a.Store, part, obj); err != nil {
		t.Fatal(err)
	}
	l, err := a.ListBackups(ctx(t))
	if err != nil || len(l.Complete) != 0 || len(l.Incomplete) != 1 {
		t.Fatalf("before the record: %+v %v", l, err)
	}
	rec := archive.Record{ID: id, Archive: name, StartLSN: "0/3000028", StopLSN: "0/3000100", StopTime: time.Now().UTC()}
	if err := a.PutRecord(ctx(t), rec); err != nil {
		t.Fatal(err)
	}
	l, err = a.ListBackups(ctx(t))
	if err != nil || len(l.Complete) != 1 || l.Complete[0].ID != id || len(l.Incomplete) != 0 {
		t.Fatalf("after the record: %+v %v", l, err)
	}
	n, _, err := a.DeleteBackup(ctx(t), id)
	if err != nil || n != 2 {
		t.Fatalf("delete: %d objects, %v", n, err)
	}
	if _, err := a.LoadBackup(ctx(t), id); !errors.Is(err, errkind.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func testListWAL(t *testing.T, s store.Store, name string) {
	a := open(t, s, name)
	var want []string
	n := waltest.Name("0000000100000000000000FE")
	for range 4 {
		if _, err := a.PutWAL(ctx(t), n, Segment(t, a, waltest.SystemID, n)); err != nil {
			t.Fatal(err)
		}
		want = append(want, n.String())
		n = n.Next(segSize)
	}
	var got []string
	err := a.ListWAL(ctx(t), "", func(n wal.Name, _ store.Info) error { got = append(got, n.String()); return nil })
	if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("list: %v %v, want %v", got, err, want)
	}
}
