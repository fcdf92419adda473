package multistore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/walstore/walstore/archive"
)

// Conflict is one name held with different contents by two stores.
type Conflict struct {
	Key                      string
	Store, Other             string
	StoreDigest, OtherDigest archive.Digest
}

func (c Conflict) String() string {
	return fmt.Sprintf("%s: %s holds SHA-256 %s, %s holds %s", c.Key, c.Store, c.StoreDigest, c.Other, c.OtherDigest)
}

// SyncReport is what a repair pass did.
type SyncReport struct {
	Objects   int            // distinct keys seen
	Copied    map[string]int // store → objects copied into it
	Bytes     int64
	Corrupt   []string // copies that failed verification (left in place)
	Conflicts []Conflict
	Failed    []string // copies that could not be made
}

// Sync copies every object a store is missing from a store that holds a
// verified copy, under prefix. Objects present everywhere with different
// sizes are compared by digest; a conflict is reported, never resolved.
func (s *Store) Sync(ctx context.Context, prefix string) (SyncReport, error) {
	rep := SyncReport{Copied: map[string]int{}}
	have := make([]map[string]int64, len(s.members))
	union := map[string]bool{}
	for i, m := range s.members {
		have[i] = map[string]int64{}
		err := m.Store.List(ctx, prefix, func(info archive.Info) error {
			have[i][info.Key] = info.Size
			union[info.Key] = true
			return nil
		})
		if err != nil {
			m.report(err)
			return rep, fmt.Errorf("list %s: %w", m.Name, err)
		}
		m.report(nil)
	}
	rep.Objects = len(union)
	for key := range union {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		s.syncKey(ctx, key, have, &rep)
	}
	return rep, nil
}

func (s *Store) syncKey(ctx context.Context, key string, have []map[string]int64, rep *SyncReport) {
	var holders, lacking []int
	sizes := map[int64]bool{}
	for i := range s.members {
		if size, ok := have[i][key]; ok {
			holders = append(holders, i)
			sizes[size] = true
		} else {
			lacking = append(lacking, i)
		}
	}
	if len(sizes) > 1 {
		s.checkConflict(ctx, key, holders, rep)
	}
	if len(lacking) == 0 {
		for _, m := range s.members {
			m.owe(key, false)
		}
		return
	}
	var data []byte
	for _, i := range holders {
		d, err := readVerified(ctx, s.members[i].Store, key)
		if err == nil {
			data = d
			break
		}
		if errors.Is(err, archive.ErrCorrupt) {
			rep.Corrupt = append(rep.Corrupt, s.members[i].Name+": "+key)
		}
	}
	if data == nil {
		rep.Failed = append(rep.Failed, key+": no store has a verified copy")
		return
	}
	for _, i := range lacking {
		m := s.members[i]
		err := m.Store.Put(ctx, key, bytes.NewReader(data), int64(len(data)))
		if err != nil && !errors.Is(err, archive.ErrExists) {
			m.report(err)
			rep.Failed = append(rep.Failed, fmt.Sprintf("%s into %s: %v", key, m.Name, err))
			continue
		}
		if err == nil {
			rep.Copied[m.Name]++
			rep.Bytes += int64(len(data))
		}
		m.owe(key, false)
	}
}

func (s *Store) checkConflict(ctx context.Context, key string, holders []int, rep *SyncReport) {
	var first archive.Digest
	for n, i := range holders {
		hdr, err := archive.StatHeader(ctx, s.members[i].Store, key)
		if err != nil {
			continue
		}
		if n == 0 {
			first = hdr.Digest
			continue
		}
		if hdr.Digest != first {
			rep.Conflicts = append(rep.Conflicts, Conflict{Key: key, Store: s.members[holders[0]].Name, StoreDigest: first, Other: s.members[i].Name, OtherDigest: hdr.Digest})
		}
	}
}
