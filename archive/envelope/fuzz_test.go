package envelope

import (
	"bytes"
	"errors"
	"io"
	"testing"
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
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrKey) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		defer rc.Close()
		out, err := io.ReadAll(io.LimitReader(rc, hdr.RawSize+1))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unexpected read error: %v", err)
			}
			return
		}
		if int64(len(out)) != hdr.RawSize {
			t.Fatalf("decoded %d bytes, header says %d", len(out), hdr.RawSize)
		}
	})
}
