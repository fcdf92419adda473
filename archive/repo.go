package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// marker is the content of the repository marker. It is the same in
// every repository (no date, no id), so that stores made repositories
// one by one and then served together hold the same marker.
type marker struct {
	Walstore int `json:"walstore_repository"`
}

// InitRepository marks s as a walstore repository (idempotent): clients
// then accept it. It reports whether the marker was written now.
func InitRepository(ctx context.Context, s store.Store) (bool, error) {
	b, _ := json.Marshal(marker{Walstore: 1})
	obj, err := envelope.NewEncoder().EncodeBytes(b, MarkerKey)
	if err != nil {
		return false, err
	}
	err = s.Put(ctx, MarkerKey, store.Bytes(obj.Bytes()))
	if errors.Is(err, errkind.ErrExists) {
		return false, nil
	}
	return err == nil, err
}

// CheckRepository refuses a location that is not a walstore repository:
// a directory that is not the mounted share, a mistyped bucket prefix.
// where names it for the message (a URL).
func CheckRepository(ctx context.Context, s store.Store, where string) error {
	_, err := s.Stat(ctx, MarkerKey)
	if errors.Is(err, errkind.ErrNotFound) {
		return fmt.Errorf("%w: %s is not a walstore repository (no marker): a share that is not mounted, or a wrong path or prefix? "+
			"To make a new repository there: walstored init --store URL (a repository made by an older walstore needs it once too)", errkind.ErrConfig, where)
	}
	return err
}

// Archives lists the names of the archives in a repository.
func Archives(ctx context.Context, s store.Store) ([]string, error) {
	names, err := store.ListDirs(ctx, s, "")
	if err != nil {
		return nil, err
	}
	out := names[:0]
	for _, n := range names {
		if ValidArchiveName(n) == nil {
			out = append(out, n)
		}
	}
	return out, nil
}
