package envelope

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/walstore/walstore/base/errkind"
)

func sample(n int) []byte {
	b := make([]byte, n)
	rand.Read(b[:n/2]) // half random, half zeros: about 2:1 like WAL
	return b
}

func readAll(t *testing.T, obj []byte) ([]byte, error) {
	t.Helper()
	_, rc, err := Open(bytes.NewReader(obj), "", nil)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 8191, 1 << 20, 16<<20 + 3} {
		for _, c := range []Compression{Zstd, NoCompression} {
			raw := sample(n)
			enc := NewEncoder()
			enc.Compression = c
			enc.SystemID = 7123456789
			obj, err := enc.EncodeBytes(raw, "a/wal/x")
			if err != nil {
				t.Fatal(err)
			}
			h := obj.Header
			if h.RawSize != int64(n) || h.SystemID != 7123456789 || h.Compression != c || h.ObjectSize() != obj.Size() {
				t.Fatalf("header %+v for %d bytes", h, n)
			}
			if c == Zstd && n >= 1<<20 && obj.Size() > int64(n)*6/10 {
				t.Errorf("%d half-random bytes compressed to %d", n, obj.Size())
			}
			got, err := readAll(t, obj.Bytes())
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("round trip of %d bytes (%v): err %v, equal %v", n, c, err, bytes.Equal(got, raw))
			}
		}
	}
}

func TestEncoderIsReusable(t *testing.T) {
	enc := NewEncoder()
	for i := 0; i < 3; i++ {
		raw := sample(100_000 + i)
		obj, err := enc.EncodeBytes(raw, "a/wal/x")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := readAll(t, obj.Bytes()); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("object %d: %v", i, err)
		}
	}
}

func TestEnvelopeDamageIsCorrupt(t *testing.T) {
	raw := sample(300_000)
	obj, _ := NewEncoder().EncodeBytes(raw, "a/wal/x")
	good := obj.Bytes()
	hs := int(obj.Header.Size())
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		return b
	}
	for name, b := range map[string][]byte{
		"header byte":     flip(20),
		"digest byte":     flip(40),
		"payload byte":    flip(hs + len(good[hs:])/2),
		"last byte":       func() []byte { b := bytes.Clone(good); b[len(b)-1] ^= 0xFF; return b }(),
		"truncated":       good[:len(good)-10],
		"header only":     good[:hs],
		"short header":    good[:hs-1],
		"trailing bytes":  append(bytes.Clone(good), 0),
		"not an envelope": []byte("this is not a walstore object, just some text of some length......"),
	} {
		_, err := readAll(t, b)
		if !errors.Is(err, errkind.ErrCorrupt) {
			t.Errorf("%s: got %v, want errkind.ErrCorrupt", name, err)
		}
	}
}

// forge builds an envelope around an arbitrary payload with a header that
// promises rawSize bytes.
func forge(payload []byte, rawSize int64, digest Digest) []byte {
	h := Header{Compression: Zstd, RawSize: rawSize, PayloadSize: int64(len(payload)), Digest: digest}
	return append(h.Marshal(), payload...)
}

// A small payload that inflates to far more than its header admits is
// stopped as soon as the output passes the promised size.
func TestDecompressionBombRefused(t *testing.T) {
	var bomb bytes.Buffer
	zw, _ := zstd.NewWriter(&bomb, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	zeros := make([]byte, 1<<20)
	for i := 0; i < 256; i++ { // 256 MiB of zeros
		zw.Write(zeros)
	}
	zw.Close()
	if bomb.Len() > 1<<20 {
		t.Fatalf("bomb payload is %d bytes", bomb.Len())
	}
	_, rc, err := Open(bytes.NewReader(forge(bomb.Bytes(), 1<<20, Digest{})), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if !errors.Is(err, errkind.ErrCorrupt) {
		t.Fatalf("bomb: read %d bytes, err %v; want errkind.ErrCorrupt", n, err)
	}
	if n > 1<<20 {
		t.Fatalf("bomb: %d bytes came out, more than the header's 1 MiB", n)
	}
}

// A zstd frame that asks for a window larger than any object needs is
// refused instead of allocated.
func TestHugeWindowRefused(t *testing.T) {
	// Frame header: magic, descriptor with single-segment off and a window
	// descriptor of 2^(10+31-...) — exponent 21 → 2 GiB window.
	frame := []byte{0x28, 0xB5, 0x2F, 0xFD, 0x00, 21 << 3, 0x01, 0x00, 0x00}
	_, err := readAll(t, forge(frame, 10, Digest{}))
	if !errors.Is(err, errkind.ErrCorrupt) {
		t.Fatalf("huge window: %v, want errkind.ErrCorrupt", err)
	}
}

func TestHeaderLimits(t *testing.T) {
	for name, h := range map[string]Header{
		"raw too big":     {Compression: Zstd, RawSize: MaxRawSize + 1},
		"payload too big": {Compression: Zstd, PayloadSize: MaxPayloadSize + 1},
		"negative":        {Compression: Zstd, RawSize: -1},
		"plain mismatch":  {Compression: NoCompression, RawSize: 10, PayloadSize: 11},
		"bad compression": {Compression: 9},
	} {
		if _, err := ParseHeader(h.Marshal()); !errors.Is(err, errkind.ErrCorrupt) {
			t.Errorf("%s: %v, want errkind.ErrCorrupt", name, err)
		}
	}
}

// marshalV1 writes a version 1 header, as walstore wrote before format 2.
func marshalV1(h Header) []byte {
	b := make([]byte, V1HeaderSize)
	le := binary.LittleEndian
	copy(b[0:6], "WALSTR")
	b[6] = 1
	b[7] = byte(h.Compression)
	le.PutUint16(b[8:], h.Flags)
	le.PutUint64(b[12:], uint64(h.RawSize))
	le.PutUint64(b[20:], uint64(h.PayloadSize))
	le.PutUint64(b[28:], h.SystemID)
	copy(b[36:68], h.Digest[:])
	le.PutUint32(b[68:], crc32.Checksum(b[:68], castagnoli))
	return b
}

// Objects written by earlier versions (format 1, no name) still read and
// verify; only a damaged one fails.
func TestVersion1StillReads(t *testing.T) {
	raw := sample(200_000)
	v2, _ := NewEncoder().EncodeBytes(raw, "a/wal/x")
	h := v2.Header
	payload := v2.Bytes()[h.Size():]
	old := append(marshalV1(h), payload...)
	hdr, rc, err := Open(bytes.NewReader(old), "a/wal/anything", nil)
	if err != nil || hdr.Version != 1 {
		t.Fatalf("open v1: %v %+v", err, hdr)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("read v1: %v", err)
	}
	if _, err := Verify(bytes.NewReader(old), "a/wal/x", nil); err != nil {
		t.Fatalf("verify v1: %v", err)
	}
	old[len(old)-5] ^= 1
	if _, err := Verify(bytes.NewReader(old), "a/wal/x", nil); !errors.Is(err, errkind.ErrCorrupt) {
		t.Fatalf("damaged v1: %v", err)
	}
}

// An object is bound to the name it was written under: read under
// another, it is corrupt. A payload that decodes but does not match the
// checksum in its header fails Verify.
func TestBoundToItsName(t *testing.T) {
	obj, _ := NewEncoder().EncodeBytes(sample(10_000), "main/wal/00000002.history")
	if _, _, err := Open(bytes.NewReader(obj.Bytes()), "main/wal/00000003.history", nil); !errors.Is(err, errkind.ErrCorrupt) || !strings.Contains(err.Error(), "00000002.history") {
		t.Fatalf("read under another name: %v", err)
	}
	if _, err := Verify(bytes.NewReader(obj.Bytes()), "main/wal/00000002.history", nil); err != nil {
		t.Fatal(err)
	}
	h := obj.Header
	h.PayloadDigest[0] ^= 1
	lying := append(h.Marshal(), obj.Bytes()[h.Size():]...)
	if _, err := Verify(bytes.NewReader(lying), "main/wal/00000002.history", nil); !errors.Is(err, errkind.ErrCorrupt) {
		t.Fatalf("payload checksum mismatch: %v", err)
	}
}

// With Reuse, an encoder builds each envelope in the buffer of the one
// before (which is then no longer valid), and every one is intact.
func TestEncoderReuse(t *testing.T) {
	enc := NewEncoder()
	enc.Reuse = true
	var first *byte
	for i, raw := range [][]byte{bytes.Repeat([]byte("a segment "), 50000), bytes.Repeat([]byte("another one "), 40000)} {
		obj, err := enc.Encode(bytes.NewReader(raw), int64(len(raw)), "a/wal/x")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = &obj.Bytes()[:1][0]
		} else if &obj.Bytes()[:1][0] != first {
			t.Fatalf("the second envelope was built in a new buffer")
		}
		_, rc, err := Open(bytes.NewReader(obj.Bytes()), "a/wal/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("envelope %d: %v (%d bytes back of %d)", i, err, len(got), len(raw))
		}
	}
}
