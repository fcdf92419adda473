package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// Records: the JSON objects an archive keeps beside its WAL and packs
// (backup records, contents and progress, drills, retention and
// recompression runs, retired timelines, verify results). Each is an
// envelope bound to its key like every object; these are the one way to
// write, read and prune them.

// putJSON stores v as JSON under key, write-once (PutObject: the same
// content again is no error, other content is a conflict), and returns
// the stored size.
func (a *Archive) putJSON(ctx context.Context, key string, v any) (int64, error) {
	return a.putEncodedJSON(ctx, key, v, false)
}

func (a *Archive) putEncodedJSON(ctx context.Context, key string, v any, compact bool) (int64, error) {
	obj, err := a.encodeJSON(key, v, compact)
	if err != nil {
		return 0, err
	}
	if _, err := PutObject(ctx, a.Store, key, obj); err != nil {
		return 0, err
	}
	return obj.Size(), nil
}

// replaceJSON stores v as JSON under key, replacing what is there (for
// admin-written metadata that is rewritten: retired timelines, verify
// results).
func (a *Archive) replaceJSON(ctx context.Context, key string, v any) error {
	obj, err := a.encodeJSON(key, v, false)
	if err != nil {
		return err
	}
	err = a.Store.Put(ctx, key, store.Bytes(obj.Bytes()))
	if errors.Is(err, errkind.ErrExists) {
		if err = a.Store.Delete(ctx, key); err == nil {
			err = a.Store.Put(ctx, key, store.Bytes(obj.Bytes()))
		}
	}
	return err
}

// encodeJSON encodes v as an envelope for key: indented, as records have
// always been written (a record written again must be the same bytes),
// or compact for the large ones (a backup's contents).
func (a *Archive) encodeJSON(key string, v any, compact bool) (*envelope.Object, error) {
	body, err := json.MarshalIndent(v, "", "  ")
	if compact {
		body, err = json.Marshal(v)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return a.Encoder().EncodeBytes(body, key)
}

// readRecord reads the JSON record under key (at most 1 MiB).
func readRecord[T any](ctx context.Context, a *Archive, key string) (T, error) {
	var v T
	b, _, err := a.ReadAll(ctx, key, 1<<20)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("%w: %s: %v", errkind.ErrCorrupt, key, err)
	}
	return v, nil
}

func readRecordPtr[T any](ctx context.Context, a *Archive, key string) (*T, error) {
	v, err := readRecord[T](ctx, a, key)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// listKeys lists the keys under prefix, sorted (record names sort by
// time).
func (a *Archive) listKeys(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	err := a.Store.List(ctx, prefix, func(i store.Info) error {
		keys = append(keys, i.Key)
		return nil
	})
	sort.Strings(keys)
	return keys, err
}

// keepNewest removes all but the newest n records under prefix.
func (a *Archive) keepNewest(ctx context.Context, prefix string, n int) error {
	keys, err := a.listKeys(ctx, prefix)
	if err != nil {
		return err
	}
	for len(keys) > n {
		if err := a.Store.Delete(ctx, keys[0]); err != nil && !errors.Is(err, errkind.ErrNotFound) {
			return err
		}
		keys = keys[1:]
	}
	return nil
}
