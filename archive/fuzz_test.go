package archive

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// FuzzParseName: any string is refused with ErrInvalid or parses into a
// name that prints back as the same string and is a safe path component.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{
		"000000010000000000000001", "00000002.history", "000000010000000000000002.partial",
		"000000010000000000000002.00000028.backup", "../000000010000000000000001", "\x00", "0000000100000000000000.history",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseName(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%q: error %v is not ErrInvalid", s, err)
			}
			return
		}
		if n.String() != s {
			t.Fatalf("%q parsed to %+v, which prints as %q", s, n, n.String())
		}
		if ValidKey("a/wal/"+s) != nil {
			t.Fatalf("%q parsed but is not a valid key component", s)
		}
	})
}

// FuzzParsePageHeader: any 40 bytes are refused or yield a header whose
// sizes and position are sane; CheckSegment never panics.
func FuzzParsePageHeader(f *testing.F) {
	good := make([]byte, LongPageHeaderSize)
	le := binary.LittleEndian
	le.PutUint16(good[0:], 0xD110)
	le.PutUint16(good[2:], 2)
	le.PutUint32(good[4:], 1)
	le.PutUint64(good[8:], 1<<24)
	le.PutUint64(good[24:], 7300000000000000001)
	le.PutUint32(good[32:], 16<<20)
	le.PutUint32(good[36:], 8192)
	f.Add(good)
	f.Add(make([]byte, 40))
	f.Add([]byte{0x10, 0xD1})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParsePageHeader(b)
		if err != nil {
			return
		}
		if !ValidSegmentSize(h.SegmentSize) || h.SystemID == 0 || h.TLI == 0 || uint64(h.PageAddr)%uint64(h.SegmentSize) != 0 {
			t.Fatalf("insane header accepted: %+v", h)
		}
		n := h.PageAddr.Segment(h.TLI, h.SegmentSize)
		if err := CheckSegment(n, h.SegmentSize, h); err != nil {
			t.Fatalf("header %+v refused under its own name %s: %v", h, n, err)
		}
	})
}

// FuzzOpenEnvelope: any bytes are refused (ErrCorrupt, or a key error for
// encrypted payloads) or decode to exactly the raw size with the right
// digest; the decoder never panics, hangs or outputs more than promised.
func FuzzOpenEnvelope(f *testing.F) {
	obj, _ := NewEncoder().EncodeBytes([]byte("a small WAL-like payload, a small WAL-like payload"))
	f.Add(obj.Bytes())
	plain := NewEncoder()
	plain.Compression = NoCompression
	obj2, _ := plain.EncodeBytes([]byte("uncompressed"))
	f.Add(obj2.Bytes())
	f.Add(obj.Bytes()[:HeaderSize])
	f.Add([]byte("WALSTR"))
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, rc, err := Open(bytes.NewReader(b))
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
