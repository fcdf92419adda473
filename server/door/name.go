package door

import (
	"strings"

	"github.com/walstore/walstore/archive"
)

// parseName checks the key: a valid archive name, and a key of the
// layout (wal/, meta/, backups/, packs/, ...).
func parseName(key string) (archive.Key, error) {
	a, _, _ := strings.Cut(key, "/")
	if err := archive.ValidArchiveName(a); err != nil {
		return archive.Key{}, err
	}
	return archive.ParseKey(key)
}
