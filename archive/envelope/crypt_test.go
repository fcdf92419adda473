package envelope

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/walstore/walstore/base/errkind"
)

func testKey(t *testing.T) *Key {
	text, err := NewKeyText()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKey([]byte(text + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEncryptedRoundTrip(t *testing.T) {
	k := testKey(t)
	marker := []byte("walstore-secret-marker-42")
	for _, n := range []int{0, 100, cryptChunk - 1, cryptChunk, 3*cryptChunk + 17} {
		raw := append(bytes.Repeat(marker, n/len(marker)), sample(n%len(marker))...)
		enc := NewEncoder()
		enc.Key = k
		obj, err := enc.EncodeBytes(raw, "a/wal/x")
		if err != nil {
			t.Fatal(err)
		}
		if !obj.Header.Encrypted() || bytes.Contains(obj.Bytes(), marker) {
			t.Fatalf("%d bytes: encrypted=%v, plaintext visible=%v", n, obj.Header.Encrypted(), bytes.Contains(obj.Bytes(), marker))
		}
		if _, err := Verify(bytes.NewReader(obj.Bytes()), "a/wal/x", nil); err != nil {
			t.Fatalf("%d bytes: keyless verify: %v", n, err)
		}
		_, rc, err := Open(bytes.NewReader(obj.Bytes()), "a/wal/x", &Keyring{Encrypt: k})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("%d bytes: round trip: %v equal=%v", n, err, bytes.Equal(got, raw))
		}
		// Rotation: an old key in Decrypt still reads it.
		_, rc, err = Open(bytes.NewReader(obj.Bytes()), "a/wal/x", &Keyring{Encrypt: testKey(t), Decrypt: []*Key{k}})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("%d bytes: read with the old key after rotation: %v", n, err)
		}
	}
}

func TestEncryptedRefusals(t *testing.T) {
	k := testKey(t)
	enc := NewEncoder()
	enc.Key = k
	obj, _ := enc.EncodeBytes(bytes.Repeat([]byte("row data "), 300000), "a/wal/x")
	b := obj.Bytes()
	if _, _, err := Open(bytes.NewReader(b), "a/wal/x", nil); !errors.Is(err, errkind.ErrKey) {
		t.Errorf("no key: %v, want errkind.ErrKey", err)
	}
	_, _, err := Open(bytes.NewReader(b), "a/wal/x", &Keyring{Encrypt: testKey(t)})
	if !errors.Is(err, errkind.ErrKey) || !errors.Is(err, errkind.ErrKey) {
		t.Errorf("wrong key: %v, want errkind.ErrKey", err)
	}
	read := func(data []byte) error {
		_, rc, err := Open(bytes.NewReader(data), "a/wal/x", &Keyring{Encrypt: k})
		if err != nil {
			return err
		}
		_, err = io.ReadAll(rc)
		return err
	}
	flipped := bytes.Clone(b)
	flipped[len(flipped)-20] ^= 1
	if err := read(flipped); !errors.Is(err, errkind.ErrCorrupt) {
		t.Errorf("tampered ciphertext: %v, want errkind.ErrCorrupt", err)
	}
	if _, err := Verify(bytes.NewReader(flipped), "a/wal/x", nil); !errors.Is(err, errkind.ErrCorrupt) {
		t.Errorf("keyless verify of tampered ciphertext: %v, want errkind.ErrCorrupt", err)
	}
	if _, err := KeyFromPassphrase([]byte("short"), "main"); err == nil {
		t.Error("short passphrase accepted")
	}
	p1, _ := KeyFromPassphrase([]byte("correct horse battery staple"), "main")
	p2, _ := KeyFromPassphrase([]byte("correct horse battery staple"), "billing")
	if p1.ID() == p2.ID() {
		t.Error("one passphrase gives two archives the same key")
	}
	for _, bad := range []string{"", "abc", "zz" + string(bytes.Repeat([]byte("0"), 62))} {
		if _, err := ParseKey([]byte(bad)); err == nil {
			t.Errorf("key %q accepted", bad)
		}
	}
}

// An encrypted object copied under another name fails, with or without
// the key: the name is in every chunk's additional data.
func TestEncryptedBoundToItsName(t *testing.T) {
	k := testKey(t)
	enc := NewEncoder()
	enc.Key = k
	obj, _ := enc.EncodeBytes([]byte("1\t0/3000000\tno recovery target specified\n"), "main/wal/00000002.history")
	if _, _, err := Open(bytes.NewReader(obj.Bytes()), "main/wal/00000003.history", &Keyring{Encrypt: k}); !errors.Is(err, errkind.ErrCorrupt) {
		t.Fatalf("swapped name: %v", err)
	}
	// Even with a header forged to carry the new name, the chunks refuse.
	h := obj.Header
	payload := obj.Bytes()[h.Size():]
	h.Name = "main/wal/00000003.history"
	forged := append(h.Marshal(), payload...)
	_, rc, err := Open(bytes.NewReader(forged), "main/wal/00000003.history", &Keyring{Encrypt: k})
	if err == nil {
		_, err = io.ReadAll(rc)
	}
	if !errors.Is(err, errkind.ErrCorrupt) {
		t.Fatalf("forged header with the new name: %v", err)
	}
}
