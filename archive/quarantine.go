package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// Quarantine sets a stored WAL object aside, deleting nothing: a segment
// that recovery cannot replay (stored before the door checked WAL, or
// planted in the store by hand), or the losing side of a split brain that
// verify names. It is moved to <archive>/quarantine/<name>.<sha256>, still
// bound to its name (verifiable), with a record of who, when and why; the
// name is free again, so the next honest push stores the good copy.
// Unquarantine puts it back.

// Quarantined is the record of an object set aside.
type Quarantined struct {
	Name   string    `json:"name"`   // the WAL file name it was stored under
	SHA256 string    `json:"sha256"` // of its raw content (of the stored bytes when its header is unreadable)
	Key    string    `json:"key"`    // where it is now
	Bytes  int64     `json:"bytes"`
	At     time.Time `json:"quarantined_at"`
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// Quarantine moves WAL file n's object to the quarantine area.
func (a *Archive) Quarantine(ctx context.Context, n wal.Name, by, reason string) (Quarantined, error) {
	key := a.Layout.WAL(n)
	b, err := readRaw(ctx, a.Store, key)
	if errors.Is(err, errkind.ErrNotFound) {
		return Quarantined{}, fmt.Errorf("%w: archive %s has no %s", errkind.ErrNotFound, a.Name, n)
	}
	if err != nil {
		return Quarantined{}, err
	}
	sum := ""
	if hdr, err := StatHeader(ctx, a.Store, key); err == nil {
		sum = hdr.Digest.String()
	} else {
		s := sha256.Sum256(b)
		sum = hex.EncodeToString(s[:])
	}
	q := Quarantined{Name: n.String(), SHA256: sum, Key: a.Layout.Quarantined(n, sum), Bytes: int64(len(b)), At: time.Now().UTC(), By: by, Reason: reason}
	// The record first: an object in quarantine always says why.
	if err := a.replaceJSON(ctx, a.Layout.QuarantineRecord(n, sum), q); err != nil {
		return q, err
	}
	err = a.Store.Put(ctx, q.Key, store.Bytes(b))
	if err != nil && !errors.Is(err, errkind.ErrExists) {
		return q, err
	}
	if err := a.Store.Delete(ctx, key); err != nil && !errors.Is(err, errkind.ErrNotFound) {
		return q, err
	}
	return q, nil
}

// Unquarantine puts quarantined WAL file n back under its name: the one
// with the given SHA-256, or the only one of that name. A name taken since
// by other content is a conflict, and both stay as they are.
func (a *Archive) Unquarantine(ctx context.Context, n wal.Name, sum string) (Quarantined, error) {
	all, err := a.QuarantinedObjects(ctx)
	if err != nil {
		return Quarantined{}, err
	}
	var match []Quarantined
	for _, q := range all {
		if q.Name == n.String() && (sum == "" || q.SHA256 == sum) {
			match = append(match, q)
		}
	}
	switch len(match) {
	case 0:
		return Quarantined{}, fmt.Errorf("%w: archive %s has no quarantined %s", errkind.ErrNotFound, a.Name, n)
	case 1:
	default:
		return Quarantined{}, fmt.Errorf("%w: archive %s has %d quarantined copies of %s: name one with --sha256", errkind.ErrInvalid, a.Name, len(match), n)
	}
	q := match[0]
	if err := a.moveObject(ctx, q.Key, a.Layout.WAL(n)); err != nil {
		return q, err
	}
	if err := a.Store.Delete(ctx, a.Layout.QuarantineRecord(n, q.SHA256)); err != nil && !errors.Is(err, errkind.ErrNotFound) {
		return q, err
	}
	return q, nil
}

// QuarantinedObjects lists the archive's quarantined objects, by name.
func (a *Archive) QuarantinedObjects(ctx context.Context) ([]Quarantined, error) {
	var keys []string
	err := a.Store.List(ctx, a.Layout.QuarantinePrefix(), func(i store.Info) error {
		if k, err := ParseKey(i.Key); err == nil && k.Kind == KindQuarantineRecord {
			keys = append(keys, i.Key)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := []Quarantined{}
	for _, key := range keys {
		b, _, err := a.ReadAll(ctx, key, 1<<20)
		if errors.Is(err, errkind.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var q Quarantined
		if err := json.Unmarshal(b, &q); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", errkind.ErrCorrupt, key, err)
		}
		out = append(out, q)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].At.Before(out[j].At)
	})
	return out, nil
}
