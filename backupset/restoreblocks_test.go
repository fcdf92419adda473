package backupset

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/memstore"
)

// storedPack stores a pack of 64 blocks the way a backup does (framed,
// or whole) and returns its id, its content and a write for each block.
func storedPack(t *testing.T, a *archive.Archive, framed bool) (string, []byte, []write) {
	t.Helper()
	var content []byte
	var sizes []int
	var ws []write
	rng := rand.NewChaCha8([32]byte{7})
	for i := range 64 {
		// Half random, half zeros: a flipped byte anywhere changes
		// what a frame decodes to.
		b := make([]byte, 128<<10-i)
		rng.Read(b[:len(b)/2])
		sum := sha256.Sum256(b)
		ws = append(ws, write{path: fmt.Sprintf("f%d", i), packOff: int64(len(content)), n: len(b), sum: hex.EncodeToString(sum[:])})
		content = append(content, b...)
		sizes = append(sizes, len(b))
	}
	sum := sha256.Sum256(content)
	id := hex.EncodeToString(sum[:])
	enc := envelope.NewEncoder()
	var obj *envelope.Object
	var err error
	if framed {
		obj, err = enc.EncodeFramesSum(content, sizes, sum, a.Layout.Pack(id))
	} else {
		obj, err = enc.EncodeBytesSum(content, sum, a.Layout.Pack(id))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Store.Put(context.Background(), a.Layout.Pack(id), store.Bytes(obj.Bytes())); err != nil {
		t.Fatal(err)
	}
	return id, content, ws
}

// A few blocks of a framed pack are read in part: right bytes, a small
// share of the pack read. A damaged frame is caught by the blocks'
// SHA-256 (and the whole read that follows reports the pack corrupt);
// a pack written whole is not framed.
func TestReadFramedReadsOnlyWhatIsNeeded(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	a := mustArchive(t, s)
	id, content, ws := storedPack(t, a, true)
	few := []write{ws[3], ws[40], ws[41]}
	if !inPartWorthIt(few, true) || inPartWorthIt(ws, false) {
		t.Fatalf("worth it: %v for 3 blocks of a delta, %v for a whole pack", inPartWorthIt(few, true), inPartWorthIt(ws, false))
	}
	out := t.TempDir()
	for i := range few {
		few[i].path = filepath.Join(out, fmt.Sprintf("f%d", i))
		os.WriteFile(few[i].path, nil, 0o600)
	}
	prog := NewProgress(io.Discard, false, "test", 0)
	defer prog.Stop()
	read, done, err := readFramed(ctx, a, id, few, prog)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range few {
		got, _ := os.ReadFile(w.path)
		if !done[i] || !bytes.Equal(got, content[w.packOff:w.packOff+int64(w.n)]) {
			t.Fatalf("block at %d: done %v, other bytes", w.packOff, done[i])
		}
	}
	info, _ := s.Stat(ctx, a.Layout.Pack(id))
	if read*4 > info.Size {
		t.Errorf("read %d bytes of a %d-byte pack for 3 of its 64 blocks", read, info.Size)
	}
	t.Logf("3 of 64 blocks: read %d of %d bytes", read, info.Size)

	// Damage the frame holding block 40: its block no longer checks.
	hdr, frames, err := a.Frames(ctx, a.Layout.Pack(id))
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := s.Get(ctx, a.Layout.Pack(id))
	var raw bytes.Buffer
	raw.ReadFrom(stored)
	damaged := raw.Bytes()
	var f envelope.Frame
	for _, fr := range frames {
		if fr.RawOff <= ws[40].packOff && ws[40].packOff < fr.RawOff+fr.RawLen {
			f = fr
		}
	}
	damaged[hdr.Size()+f.Off+f.Len/2] ^= 0x40
	if err := s.Delete(ctx, a.Layout.Pack(id)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, a.Layout.Pack(id), store.Bytes(damaged)); err != nil {
		t.Fatal(err)
	}
	t.Logf("flipped byte %d of frame %+v", f.Len/2, f)
	// Block 3's frame is whole: it is written; 40's is not.
	if _, done, err := readFramed(ctx, a, id, few, prog); err == nil || !done[0] || done[1] {
		t.Fatalf("a damaged frame: err %v, blocks written %v", err, done)
	}
	if _, _, err := FetchPack(ctx, a, id, new([]byte)); !errors.Is(err, errkind.ErrCorrupt) {
		t.Fatalf("the whole read of the damaged pack: %v, want corrupt", err)
	}

	b := mustArchive(t, memstore.New())
	wid, _, wws := storedPack(t, b, false)
	if _, _, err := readFramed(ctx, b, wid, wws[:2], prog); !errors.Is(err, envelope.ErrNotFramed) {
		t.Fatalf("a pack written whole: %v, want not framed", err)
	}
}

func mustArchive(t *testing.T, s store.Store) *archive.Archive {
	a, err := archive.New(s, "main")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A pack read whole for a restore is checked block by block, as part of
// the read: the right listing gives the content, a listing that lies
// about one block and a damaged pack are both refused as corrupt.
func TestFetchBlocksChecksEachBlock(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	a := mustArchive(t, s)
	id, content, ws := storedPack(t, a, false)
	data, _, err := fetchBlocks(ctx, a, id, new([]byte), ws)
	if err != nil || !bytes.Equal(data, content) {
		t.Fatalf("the right listing: %v (content equal: %v)", err, bytes.Equal(data, content))
	}
	lie := append([]write(nil), ws...)
	lie[7].sum = ws[8].sum
	if _, _, err := fetchBlocks(ctx, a, id, new([]byte), lie); !errors.Is(err, errkind.ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte(ws[7].path)) {
		t.Fatalf("a listing that lies about %s: %v, want corrupt naming it", ws[7].path, err)
	}
	past := append([]write(nil), ws...)
	past[0].packOff = int64(len(content))
	if _, _, err := fetchBlocks(ctx, a, id, new([]byte), past); !errors.Is(err, errkind.ErrCorrupt) {
		t.Fatalf("a block past the pack's end: %v, want corrupt", err)
	}
	stored, _ := s.Get(ctx, a.Layout.Pack(id))
	var raw bytes.Buffer
	raw.ReadFrom(stored)
	damaged := raw.Bytes()
	damaged[len(damaged)/2] ^= 0x40
	s.Delete(ctx, a.Layout.Pack(id))
	if err := s.Put(ctx, a.Layout.Pack(id), store.Bytes(damaged)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fetchBlocks(ctx, a, id, new([]byte), ws); !errors.Is(err, errkind.ErrCorrupt) {
		t.Fatalf("a damaged pack: %v, want corrupt", err)
	}
}
