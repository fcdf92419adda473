package take

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/walstore/walstore/backupset"
	"github.com/walstore/walstore/wal"
)

// pgManifestFile is one file of PostgreSQL's backup_manifest.
type pgManifestFile struct {
	path  string
	size  int64
	mtime time.Time
	crc   uint32 // CRC-32C of the file's bytes
}

// pgManifest writes PostgreSQL's backup_manifest (version 1, as the
// server sends it to pg_basebackup: backup_manifest.c) for a backup read
// locally, so that pg_verifybackup can check a restored copy like one
// made by pg_basebackup. The manifest's own checksum is the SHA-256 of
// everything before its line.
func pgManifest(files []pgManifestFile, tli uint32, start, end wal.LSN) []byte {
	var b bytes.Buffer
	b.WriteString("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [")
	for i, f := range files {
		if i == 0 {
			b.WriteString("\n")
		} else {
			b.WriteString(",\n")
		}
		if utf8.ValidString(f.path) {
			p, _ := json.Marshal(f.path)
			fmt.Fprintf(&b, "{ \"Path\": %s, ", p)
		} else {
			fmt.Fprintf(&b, "{ \"Encoded-Path\": \"%s\", ", hex.EncodeToString([]byte(f.path)))
		}
		fmt.Fprintf(&b, "\"Size\": %d, \"Last-Modified\": \"%s\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"%s\" }",
			f.size, f.mtime.UTC().Format("2006-01-02 15:04:05")+" GMT", backupset.PGCRC32C(f.crc))
	}
	b.WriteString("\n],\n\"WAL-Ranges\": [\n")
	fmt.Fprintf(&b, "{ \"Timeline\": %d, \"Start-LSN\": \"%s\", \"End-LSN\": \"%s\" }", tli, start, end)
	b.WriteString("\n],\n")
	sum := sha256.Sum256(b.Bytes())
	fmt.Fprintf(&b, "\"Manifest-Checksum\": \"%s\"}\n", hex.EncodeToString(sum[:]))
	return b.Bytes()
}
