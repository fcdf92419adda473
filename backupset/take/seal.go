package take

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/durable"
	"github.com/walstore/walstore/base/errkind"
)

// The local reader takes a file unread from the newest backup when its
// fingerprint (size, times, inode) matches that backup's entry. A backup
// token can write backup records, so a stolen one could add a "newest"
// backup whose entries copy real fingerprints and point at other blocks;
// the next local backup would take those blocks unread, and restore them.
// So each entry the local reader writes carries a seal: an HMAC-SHA256,
// under a key only the database host holds, of the entry's path,
// fingerprint, CRC-32C and the SHA-256 of each of its blocks. An entry is
// taken unread only when its seal verifies; the key never leaves the host
// (it lives in the cluster's state directory, beside PGDATA, which no
// backup copies), and without it every file is read.

// SealKeyFile is the key's name in the cluster's state directory.
const SealKeyFile = "backup-seal.key"

// sealKeySize is the key's length in bytes.
const sealKeySize = 32

// LoadSealKey reads the database host's seal key at path, making it (32
// random bytes, mode 0600, fsync'd) the first time. What it makes belongs
// to the owner of pgdata when it runs as root, so that the cluster's own
// user (walpush's push-ahead markers live in the same state directory)
// and a later backup run as that user can use them.
func LoadSealKey(path, pgdata string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		dir := filepath.Dir(path)
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, err
			}
			chownLike(dir, pgdata)
		}
		key = make([]byte, sealKeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		// Written whole and fsync'd under a temporary name, then linked
		// into place: a backup running beside this one never reads half
		// a key, and a key already there is never replaced.
		f, err := os.CreateTemp(dir, ".seal-*")
		if err != nil {
			return nil, err
		}
		tmp := f.Name()
		defer os.Remove(tmp)
		_, err = f.Write(key)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			chownLike(tmp, pgdata)
			err = os.Link(tmp, path)
		}
		if errors.Is(err, fs.ErrExist) {
			return LoadSealKey(path, pgdata) // made by a backup running beside this one
		}
		if err == nil {
			err = durable.SyncDir(dir)
		}
		if err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s is readable by others (mode %v): whoever reads it can seal forged backup entries; chmod 600 it", errkind.ErrConfig, path, fi.Mode().Perm())
	}
	if len(key) != sealKeySize {
		return nil, fmt.Errorf("%w: %s holds %d bytes, not a seal key of %d", errkind.ErrConfig, path, len(key), sealKeySize)
	}
	return key, nil
}

// chownLike hands path to the owner of like, when run as root.
func chownLike(path, like string) {
	if os.Geteuid() != 0 {
		return
	}
	if fi, err := os.Stat(like); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			os.Chown(path, int(st.Uid), int(st.Gid))
		}
	}
}

// sealOf is the seal of a locally read entry under key.
func sealOf(key []byte, e *archive.Entry) string {
	m := hmac.New(sha256.New, key)
	b := []byte("walstore entry seal v1\x00")
	b = append(append(b, e.Path...), 0)
	for _, n := range []int64{e.Size, e.MTime, e.CTime, int64(e.Inode)} {
		b = append(strconv.AppendInt(b, n, 10), 0)
	}
	if e.CRC != nil {
		b = strconv.AppendUint(b, uint64(*e.CRC), 10)
	}
	for _, blk := range e.Blocks {
		b = append(strconv.AppendInt(append(b, 0), int64(blk.Len), 10), ':')
		b = append(b, blk.SHA256...)
	}
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

// sealed says whether e carries a seal made with key.
func sealed(key []byte, e *archive.Entry) bool {
	return len(key) > 0 && e.Seal != "" && hmac.Equal([]byte(sealOf(key, e)), []byte(e.Seal))
}
