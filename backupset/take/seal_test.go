package take

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walstore/walstore/archive"
)

func TestSealBindsFingerprintAndBlocks(t *testing.T) {
	key := []byte(strings.Repeat("k", sealKeySize))
	crc := uint32(7)
	e := archive.Entry{Path: "base/5/16384", Size: 8192, MTime: 1, CTime: 2, Inode: 3, CRC: &crc,
		Blocks: []archive.Block{{Pack: 0, Off: 0, Len: 8192, SHA256: strings.Repeat("a", 64)}}}
	if sealed(key, &e) {
		t.Fatal("an entry without a seal counts as sealed")
	}
	e.Seal = sealOf(key, &e)
	if !sealed(key, &e) {
		t.Fatal("a sealed entry does not verify")
	}
	if sealed(nil, &e) || sealed([]byte(strings.Repeat("x", sealKeySize)), &e) {
		t.Fatal("a seal verifies without this host's key")
	}
	// A forger who copies the fingerprint and seal but points at other
	// blocks, or changes any part of the fingerprint, breaks the seal.
	for name, change := range map[string]func(*archive.Entry){
		"block hash": func(x *archive.Entry) { x.Blocks = []archive.Block{{Len: 8192, SHA256: strings.Repeat("b", 64)}} },
		"block len":  func(x *archive.Entry) { x.Blocks = []archive.Block{{Len: 4096, SHA256: strings.Repeat("a", 64)}} },
		"no blocks":  func(x *archive.Entry) { x.Blocks = nil },
		"path":       func(x *archive.Entry) { x.Path = "base/5/16385" },
		"size":       func(x *archive.Entry) { x.Size++ },
		"mtime":      func(x *archive.Entry) { x.MTime++ },
		"ctime":      func(x *archive.Entry) { x.CTime++ },
		"inode":      func(x *archive.Entry) { x.Inode++ },
		"crc":        func(x *archive.Entry) { c := uint32(8); x.CRC = &c },
	} {
		f := e
		change(&f)
		if sealed(key, &f) {
			t.Errorf("changing the %s keeps the seal valid", name)
		}
	}
	// Where a block lies is not sealed: a wrong place fails the block's
	// own SHA-256 at restore.
	moved := e
	moved.Blocks = []archive.Block{{Pack: 3, Off: 99, Len: 8192, SHA256: strings.Repeat("a", 64)}}
	if !sealed(key, &moved) {
		t.Error("the seal covers block positions")
	}
}

func TestLoadSealKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state", SealKeyFile)
	k1, err := LoadSealKey(path, dir)
	if err != nil || len(k1) != sealKeySize {
		t.Fatalf("make: %v (%d bytes)", err, len(k1))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode().Perm())
	}
	k2, err := LoadSealKey(path, dir)
	if err != nil || string(k1) != string(k2) {
		t.Fatalf("load: %v, same key %v", err, string(k1) == string(k2))
	}
	os.Chmod(path, 0o640)
	if _, err := LoadSealKey(path, dir); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a key readable by others: %v", err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("short"), 0o600)
	if _, err := LoadSealKey(path, dir); err == nil || !strings.Contains(err.Error(), "not a seal key") {
		t.Fatalf("a short key: %v", err)
	}
}

// Backups making the key at once all end up with the one key on disk.
func TestLoadSealKeyRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, SealKeyFile)
	keys := make(chan string, 8)
	for range 8 {
		go func() {
			k, err := LoadSealKey(path, dir)
			if err != nil {
				t.Error(err)
			}
			keys <- string(k)
		}()
	}
	for range 8 {
		if k := <-keys; len(k) != sealKeySize {
			t.Fatalf("a key of %d bytes", len(k))
		} else if onDisk, _ := os.ReadFile(path); k != string(onDisk) {
			t.Fatal("a backup got a key other than the one on disk")
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".seal-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
