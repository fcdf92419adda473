package backupset

import (
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
)

// What taking (backupset/take) and restoring (here) share of a backup in
// blocks: the sizes, the CRC-32C PostgreSQL's manifests use, the pack
// buffers and reads, Progress lines.

// Block and pack sizes of backups in blocks (see the package doc).
const (
	BlockSize = 128 << 10
	PackSize  = 32 << 20
)

// Castagnoli is the CRC-32C table (PostgreSQL's page and manifest
// checksums).
var Castagnoli = crc32.MakeTable(crc32.Castagnoli)

// PGCRC32C is a CRC-32C as PostgreSQL writes it into a manifest: the
// bytes as they lie in memory (checksum_helper.c: memcpy of the uint32),
// in hex; little-endian on the machines PostgreSQL 15 runs on here.
func PGCRC32C(crc uint32) string {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], crc)
	return hex.EncodeToString(b[:])
}
