package envelope

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/walstore/walstore/base/errkind"
)

// framedSample is content made of parts the way a pack is: full blocks
// and the short last blocks of small files.
func framedSample() ([]byte, []int) {
	sizes := []int{128 << 10, 128 << 10, 5000, 17, 0, 90000, 128 << 10, 40000, 128<<10 - 1, 600 << 10, 3}
	var b []byte
	for i, n := range sizes {
		part := sample(n)
		if i%2 == 1 {
			part = bytes.Repeat([]byte{byte(i)}, n)
		}
		b = append(b, part...)
	}
	return b, sizes
}

// A framed object reads whole like any other, and each frame alone
// decodes to its part of the content.
func TestFramedRoundTrip(t *testing.T) {
	raw, sizes := framedSample()
	enc := NewEncoder()
	obj, err := enc.EncodeFramesSum(raw, sizes, sha256.Sum256(raw), "a/backups/packs/x")
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, obj.Bytes())
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("whole read: err %v, equal %v", err, bytes.Equal(got, raw))
	}
	payload := obj.Bytes()[obj.Header.Size():]
	if err := VerifyPayloadBytes(obj.Header, payload, nil); err != nil {
		t.Fatalf("in-memory check: %v", err)
	}
	// Too short a prefix says how much the index needs.
	if _, need, err := Frames(obj.Header, payload[:20]); err != nil || need != IndexSize(payload) {
		t.Fatalf("short prefix: need %d, err %v (index %d bytes)", need, err, IndexSize(payload))
	}
	frames, _, err := Frames(obj.Header, payload)
	if err != nil {
		t.Fatal(err)
	}
	// Parts share frames up to 512 KiB; no part is split, however large.
	if len(frames) != 4 || frames[2].RawLen != 600<<10 {
		t.Errorf("%d frames for parts %v: %+v", len(frames), sizes, frames)
	}
	for _, f := range frames {
		part, err := DecodeFrame(nil, payload[f.Off:f.Off+f.Len], f)
		if err != nil {
			t.Fatalf("frame %+v: %v", f, err)
		}
		if !bytes.Equal(part, raw[f.RawOff:f.RawOff+f.RawLen]) {
			t.Fatalf("frame %+v decodes to other bytes", f)
		}
	}
	// A frame given the wrong bytes, or promising fewer, is corrupt.
	f := frames[0]
	if _, err := DecodeFrame(nil, payload[frames[1].Off:frames[1].Off+frames[1].Len], f); !errors.Is(err, errkind.ErrCorrupt) {
		t.Errorf("another frame's bytes: %v", err)
	}
	short := f
	short.RawLen--
	if _, err := DecodeFrame(nil, payload[f.Off:f.Off+f.Len], short); !errors.Is(err, errkind.ErrCorrupt) {
		t.Errorf("a frame longer than its index says: %v", err)
	}
}

// An index that does not describe its payload is corrupt; an object
// written whole, or encrypted, is not framed.
func TestFrameIndexRefusals(t *testing.T) {
	raw, sizes := framedSample()
	enc := NewEncoder()
	obj, err := enc.EncodeFramesSum(raw, sizes, sha256.Sum256(raw), "k")
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Clone(obj.Bytes()[obj.Header.Size():])
	payload[indexFixed+4]++ // the first frame's payload length
	if _, _, err := Frames(obj.Header, payload); !errors.Is(err, errkind.ErrCorrupt) {
		t.Errorf("a wrong frame length: %v", err)
	}
	whole, _ := NewEncoder().EncodeBytes(raw, "k")
	if _, _, err := Frames(whole.Header, whole.Bytes()[whole.Header.Size():]); !errors.Is(err, ErrNotFramed) {
		t.Errorf("an object written whole: %v", err)
	}
	if _, err := enc.EncodeFramesSum(raw, sizes[1:], sha256.Sum256(raw), "k"); !errors.Is(err, errkind.ErrInvalid) {
		t.Errorf("parts that do not add up: %v", err)
	}
	key, _ := NewKeyText()
	k, _ := ParseKey([]byte(key))
	enc.Key = k
	sealed, err := enc.EncodeFramesSum(raw, sizes, sha256.Sum256(raw), "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Frames(sealed.Header, sealed.Bytes()[sealed.Header.Size():]); !errors.Is(err, ErrNotFramed) {
		t.Errorf("an encrypted object: %v", err)
	}
}
