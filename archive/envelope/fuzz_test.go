package envelope

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"github.com/walstore/walstore/base/errkind"
)

// FuzzOpenEnvelope: any bytes are refused (ErrCorrupt, or a key error for
// encrypted payloads) or decode to exactly the raw size with the right
// digest; the decoder never panics, hangs or outputs more than promised.
func FuzzOpenEnvelope(f *testing.F) {
	obj, _ := NewEncoder().EncodeBytes([]byte("a small WAL-like payload, a small WAL-like payload"), "a/wal/x")
	f.Add(obj.Bytes())
	plain := NewEncoder()
	plain.Compression = NoCompression
	obj2, _ := plain.EncodeBytes([]byte("uncompressed"), "a/wal/x")
	f.Add(obj2.Bytes())
	f.Add(obj.Bytes()[:FixedSize])
	f.Add([]byte("WALSTR"))
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, rc, err := Open(bytes.NewReader(b), "", nil)
		if err != nil {
			if !errors.Is(err, errkind.ErrCorrupt) && !errors.Is(err, errkind.ErrKey) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		defer rc.Close()
		out, err := io.ReadAll(io.LimitReader(rc, hdr.RawSize+1))
		if err != nil {
			if !errors.Is(err, errkind.ErrCorrupt) {
				t.Fatalf("unexpected read error: %v", err)
			}
			return
		}
		if int64(len(out)) != hdr.RawSize {
			t.Fatalf("decoded %d bytes, header says %d", len(out), hdr.RawSize)
		}
	})
}

// The in-memory check and the streaming one give the same verdict on
// any body: both accept it, or both call it corrupt.
func FuzzVerifyPayloadBytesAgrees(f *testing.F) {
	big := bytes.Repeat([]byte("WAL record with a tail that repeats; "), 4000)
	for _, c := range []Compression{Zstd, NoCompression} {
		enc := NewEncoder()
		enc.Compression = c
		obj, _ := enc.EncodeBytes(big, "a/wal/x")
		f.Add(obj.Bytes())
		f.Add(obj.Bytes()[:len(obj.Bytes())-1])
		f.Add(append(bytes.Clone(obj.Bytes()), 0))
	}
	parts := bytes.Repeat([]byte("pages of a relation; "), 2000)
	framed, _ := NewEncoder().EncodeFramesSum(parts, []int{10000, 20000, len(parts) - 30000}, sha256.Sum256(parts), "a/backups/packs/x")
	f.Add(framed.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, err := ParseHeader(b)
		if err != nil {
			return
		}
		// A frame index, when there is one, is read without a panic, and
		// each frame it lists decodes to its length or is corrupt.
		if frames, _, err := Frames(hdr, b[hdr.Size():]); err == nil {
			for _, fr := range frames {
				if fr.Off+fr.Len <= int64(len(b))-hdr.Size() {
					if _, err := DecodeFrame(nil, b[hdr.Size()+fr.Off:hdr.Size()+fr.Off+fr.Len], fr); err != nil && !errors.Is(err, errkind.ErrCorrupt) {
						t.Fatalf("frame %+v: unexpected error class: %v", fr, err)
					}
				}
			}
		}
		payload := b[hdr.Size():]
		streamed := VerifyPayload(hdr, bytes.NewReader(payload), nil)
		held := VerifyPayloadBytes(hdr, payload, nil)
		if (streamed == nil) != (held == nil) {
			t.Fatalf("streaming check says %v, in-memory check says %v", streamed, held)
		}
		if held != nil && !errors.Is(held, errkind.ErrCorrupt) && !errors.Is(held, errkind.ErrKey) {
			t.Fatalf("unexpected error class: %v", held)
		}
	})
}

// Every single-byte flip in a real object's payload is caught by the
// in-memory check, as by the streaming one.
func TestVerifyPayloadBytesCatchesFlips(t *testing.T) {
	raw := bytes.Repeat([]byte("0123456789abcdef page header and records "), 3000)
	obj, err := NewEncoder().EncodeBytes(raw, "a/wal/x")
	if err != nil {
		t.Fatal(err)
	}
	hdr := obj.Header
	payload := obj.Bytes()[hdr.Size():]
	if err := VerifyPayloadBytes(hdr, payload, nil); err != nil {
		t.Fatalf("intact payload refused: %v", err)
	}
	for i := 0; i < len(payload); i += 7 {
		bad := bytes.Clone(payload)
		bad[i] ^= 0x40
		if err := VerifyPayloadBytes(hdr, bad, nil); !errors.Is(err, errkind.ErrCorrupt) {
			t.Fatalf("flip at payload byte %d: %v, want errkind.ErrCorrupt", i, err)
		}
	}
}
