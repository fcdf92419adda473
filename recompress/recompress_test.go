package recompress

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/memstore"
)

// text is compressible data shaped like WAL full of hex strings.
func text(seed, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		h := md5.Sum([]byte(fmt.Sprint(seed, i)))
		b.WriteString(hex.EncodeToString(h[:]))
		b.WriteString(fmt.Sprintf(" row %d of batch %d\n", i, seed))
	}
	return b.Bytes()[:n]
}

func segKey(i int) string { return fmt.Sprintf("main/wal/0000000100000000000000%02X", i) }

// repo stores n segments at the Fast level and returns their raw bytes.
func repo(t *testing.T, n int) (*memstore.Store, map[string][]byte) {
	s := memstore.New()
	raw := map[string][]byte{}
	for i := 1; i <= n; i++ {
		b := text(i, 1<<20)
		obj, err := envelope.NewEncoder().EncodeBytes(b, segKey(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(context.Background(), segKey(i), store.Bytes(obj.Bytes())); err != nil {
			t.Fatal(err)
		}
		raw[segKey(i)] = b
	}
	return s, raw
}

func sameContent(t *testing.T, s store.Store, raw map[string][]byte) {
	t.Helper()
	for k, want := range raw {
		buf, err := readAll(context.Background(), s, k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decode(buf, k)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s decodes to other bytes after recompression (%v)", k, err)
		}
	}
}

func TestFastEncodedTellsTheLevels(t *testing.T) {
	b := text(1, 1<<20)
	for _, c := range []struct {
		level envelope.Level
		fast  bool
	}{{envelope.Fast, true}, {envelope.Small, false}} {
		obj, _ := envelope.NewEncoderLevel(c.level).EncodeBytes(b, "k")
		if got := fastEncoded(obj.Bytes()[obj.Header.Size():]); got != c.fast {
			t.Errorf("level %d: fastEncoded = %v", c.level, got)
		}
	}
	for _, junk := range [][]byte{nil, []byte("not zstd at all"), {0x28, 0xB5, 0x2F, 0xFD, 0xFF}} {
		if fastEncoded(junk) {
			t.Errorf("fastEncoded(%q) = true", junk)
		}
	}
}

// A pass makes old Fast objects smaller, keeps every byte they decode to,
// leaves the archive's newest segment and young objects alone, and a
// second pass finds nothing left to do.
func TestPassRecompressesOnceAndKeepsContent(t *testing.T) {
	ctx := context.Background()
	s, raw := repo(t, 4)
	time.Sleep(10 * time.Millisecond)
	rep, err := Run(ctx, s, Options{MinAge: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Recompressed != 3 || rep.TooYoung != 1 || rep.BytesAfter >= rep.BytesBefore {
		t.Fatalf("first pass: %+v", rep)
	}
	t.Logf("%d objects: %d -> %d bytes (raw %d)", rep.Recompressed, rep.BytesBefore, rep.BytesAfter, rep.RawBytes)
	sameContent(t, s, raw)
	rep, err = Run(ctx, s, Options{MinAge: time.Millisecond})
	if err != nil || rep.Recompressed != 0 || rep.AlreadySmall != 3 {
		t.Fatalf("second pass: %+v, %v", rep, err)
	}
	if rep, _ := Run(ctx, s, Options{MinAge: time.Hour}); rep.Recompressed != 0 || rep.TooYoung != 4 {
		t.Fatalf("with everything younger than MinAge: %+v", rep)
	}
}

// A copy replaced between the read and the replacement (another pass, a
// repair) is never overwritten; a dry run replaces nothing; an encrypted
// object is left alone; a cancelled pass stops.
func TestPassNeverOverwritesWhatChanged(t *testing.T) {
	ctx := context.Background()
	s, raw := repo(t, 3)
	time.Sleep(10 * time.Millisecond)
	var replacedByOther string
	rep, err := Run(ctx, s, Options{MinAge: time.Millisecond, beforeReplace: func(key string) {
		if replacedByOther != "" {
			return
		}
		replacedByOther = key
		cur, _ := s.Stat(ctx, key)
		obj, _ := envelope.NewEncoder().EncodeBytes(raw[key], key)
		if err := s.Replace(ctx, key, cur, store.Bytes(obj.Bytes())); err != nil {
			t.Fatal(err)
		}
	}})
	if err != nil || rep.Changed != 1 || rep.Recompressed != 1 {
		t.Fatalf("a copy replaced meanwhile: %+v, %v", rep, err)
	}
	if buf, _ := readAll(ctx, s, replacedByOther); !fastEncoded(buf[envelope.FixedSize+len(replacedByOther):]) {
		t.Fatal("the pass overwrote a copy that changed after it was read")
	}
	sameContent(t, s, raw)

	s, raw = repo(t, 3)
	time.Sleep(10 * time.Millisecond)
	before, _ := readAll(ctx, s, segKey(1))
	if rep, err := Run(ctx, s, Options{MinAge: time.Millisecond, DryRun: true}); err != nil || rep.Recompressed != 2 || rep.Saved() <= 0 {
		t.Fatalf("dry run: %+v, %v", rep, err)
	}
	if after, _ := readAll(ctx, s, segKey(1)); !bytes.Equal(before, after) {
		t.Fatal("a dry run replaced an object")
	}

	keyText, _ := envelope.NewKeyText()
	key, _ := envelope.ParseKey([]byte(keyText))
	enc := envelope.NewEncoder()
	enc.Key = key
	obj, _ := enc.EncodeBytes(text(9, 1<<20), "main/wal/000000010000000000000009")
	s.Put(ctx, "main/wal/000000010000000000000009", store.Bytes(obj.Bytes()))
	s.Put(ctx, segKey(10), store.Bytes(mustEncode(t, text(10, 1<<20), segKey(10))))
	time.Sleep(10 * time.Millisecond)
	if rep, err := Run(ctx, s, Options{MinAge: time.Millisecond}); err != nil || rep.Encrypted != 1 {
		t.Fatalf("an encrypted object: %+v, %v", rep, err)
	}
	sameContent(t, s, raw)

	s, _ = repo(t, 5)
	time.Sleep(10 * time.Millisecond)
	cctx, cancel := context.WithCancel(ctx)
	n := 0
	rep, err = Run(cctx, s, Options{MinAge: time.Millisecond, beforeReplace: func(string) {
		if n++; n == 2 {
			cancel()
		}
	}})
	if err != nil || !rep.Stopped || rep.Recompressed > 2 {
		t.Fatalf("a cancelled pass: %+v, %v", rep, err)
	}
}

func mustEncode(t *testing.T, b []byte, key string) []byte {
	obj, err := envelope.NewEncoder().EncodeBytes(b, key)
	if err != nil {
		t.Fatal(err)
	}
	return obj.Bytes()
}

// A stored copy that does not verify is reported and left as is; the
// pass goes on with the others.
func TestPassReportsCorruptCopies(t *testing.T) {
	ctx := context.Background()
	s, raw := repo(t, 3)
	buf, _ := readAll(ctx, s, segKey(1))
	bad := append([]byte(nil), buf...)
	bad[len(bad)-100] ^= 0xFF
	cur, _ := s.Stat(ctx, segKey(1))
	if err := s.Replace(ctx, segKey(1), cur, store.Bytes(bad)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	rep, err := Run(ctx, s, Options{MinAge: time.Millisecond})
	if err != nil || len(rep.Corrupt) != 1 || rep.Corrupt[0] != segKey(1) || rep.Recompressed != 1 {
		t.Fatalf("a corrupt copy: %+v, %v", rep, err)
	}
	if after, _ := readAll(ctx, s, segKey(1)); !bytes.Equal(after, bad) {
		t.Fatal("the corrupt copy was replaced")
	}
	delete(raw, segKey(1))
	sameContent(t, s, raw)
}

// With MaxAge, objects older than it are not looked at.
func TestMaxAgeLeavesOldObjects(t *testing.T) {
	ctx := context.Background()
	s, _ := repo(t, 3)
	time.Sleep(50 * time.Millisecond)
	rep, err := Run(ctx, s, Options{MinAge: time.Millisecond, MaxAge: 20 * time.Millisecond})
	if err != nil || rep.Recompressed != 0 || rep.TooOld != 3 {
		t.Fatalf("everything older than MaxAge: %+v, %v", rep, err)
	}
}

// A backup's pack keeps its frames through recompression, so that a delta
// restore can still read it in part: the same frames, each decoding to
// the same bytes, in a smaller object.
func TestPassKeepsFrames(t *testing.T) {
	ctx := context.Background()
	s, _ := repo(t, 1)
	var content []byte
	var sizes []int
	for i := range 20 {
		b := text(100+i, 128<<10-i*1000)
		content = append(content, b...)
		sizes = append(sizes, len(b))
	}
	sum := sha256.Sum256(content)
	key := archive.Layout{Archive: "main"}.Pack(hex.EncodeToString(sum[:]))
	obj, err := envelope.NewEncoder().EncodeFramesSum(content, sizes, sum, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, key, store.Bytes(obj.Bytes())); err != nil {
		t.Fatal(err)
	}
	before, _, err := envelope.Frames(obj.Header, obj.Bytes()[obj.Header.Size():])
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	rep, err := Run(ctx, s, Options{MinAge: time.Millisecond})
	if err != nil || rep.Recompressed != 1 {
		t.Fatalf("pass: %+v, %v", rep, err)
	}
	buf, err := readAll(ctx, s, key)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := envelope.NewObject(buf)
	if err != nil {
		t.Fatal(err)
	}
	payload := buf[stored.Header.Size():]
	after, _, err := envelope.Frames(stored.Header, payload)
	if err != nil || len(after) != len(before) || stored.Size() >= obj.Size() {
		t.Fatalf("after the pass: %d frames (before %d), %d bytes (before %d), %v", len(after), len(before), stored.Size(), obj.Size(), err)
	}
	for i, f := range after {
		if f.RawOff != before[i].RawOff || f.RawLen != before[i].RawLen {
			t.Fatalf("frame %d moved: %+v, was %+v", i, f, before[i])
		}
		part, err := envelope.DecodeFrame(nil, payload[f.Off:f.Off+f.Len], f)
		if err != nil || !bytes.Equal(part, content[f.RawOff:f.RawOff+f.RawLen]) {
			t.Fatalf("frame %d decodes to other bytes (%v)", i, err)
		}
	}
	if got, err := decode(buf, key); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("the pack decodes to other bytes (%v)", err)
	}
	// Recognised as done: a second pass leaves it.
	if rep, err := Run(ctx, s, Options{MinAge: time.Millisecond}); err != nil || rep.Recompressed != 0 {
		t.Fatalf("second pass: %+v, %v", rep, err)
	}
}
