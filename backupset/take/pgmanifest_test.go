package take

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"testing"
	"time"

	"github.com/walstore/walstore/backupset"
	"github.com/walstore/walstore/wal"
)

// The manifest is what PostgreSQL's server writes: JSON, the CRC-32C of
// each file as its bytes lie in memory, paths that are not UTF-8
// hex-encoded, and a SHA-256 of everything before its own line.
func TestPGManifest(t *testing.T) {
	at := time.Date(2026, 12, 2, 19, 5, 7, 0, time.UTC)
	data := []byte("15\n")
	m := pgManifest([]pgManifestFile{
		{path: "PG_VERSION", size: 3, mtime: at, crc: crc32.Checksum(data, backupset.Castagnoli)},
		{path: "base/1/\xff", size: 0, mtime: at},
	}, 2, wal.LSN(0x3000028), wal.LSN(0x3000100))
	var doc struct {
		Version  int              `json:"PostgreSQL-Backup-Manifest-Version"`
		Files    []map[string]any `json:"Files"`
		Checksum string           `json:"Manifest-Checksum"`
	}
	if err := json.Unmarshal(m, &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, m)
	}
	files := doc.Files
	if doc.Version != 1 || len(files) != 2 {
		t.Fatalf("version %d, %d files:\n%s", doc.Version, len(files), m)
	}
	want := map[string]any{"Path": "PG_VERSION", "Size": 3.0, "Last-Modified": "2026-12-02 19:05:07 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": backupset.PGCRC32C(crc32.Checksum(data, backupset.Castagnoli))}
	for k, v := range want {
		if files[0][k] != v {
			t.Errorf("%s = %v, want %v", k, files[0][k], v)
		}
	}
	if files[1]["Encoded-Path"] != hex.EncodeToString([]byte("base/1/\xff")) || files[1]["Checksum"] != "00000000" {
		t.Errorf("second file: %v", files[1])
	}
	if !bytes.Contains(m, []byte(`{ "Timeline": 2, "Start-LSN": "0/3000028", "End-LSN": "0/3000100" }`)) {
		t.Errorf("WAL range missing:\n%s", m)
	}
	i := bytes.Index(m, []byte(`"Manifest-Checksum"`))
	sum := sha256.Sum256(m[:i])
	if doc.Checksum != hex.EncodeToString(sum[:]) {
		t.Errorf("manifest checksum %s, want the SHA-256 of what precedes it, %x", doc.Checksum, sum)
	}
	if backupset.PGCRC32C(0x12345678) != "78563412" {
		t.Errorf("CRC-32C written as %s, want its little-endian bytes", backupset.PGCRC32C(0x12345678))
	}
}
