package multistore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// Conflict is one name held with different contents by two stores.
type Conflict struct {
	Key                          string `json:"key"`
	Store                        string `json:"store"`
	Other                        string `json:"other_store"`
	StoreIdentity, OtherIdentity string `json:"-"`
}

func (c Conflict) String() string {
	return fmt.Sprintf("%s: %s and %s hold different contents (%s / %s)", c.Key, c.Store, c.Other, short(c.StoreIdentity), short(c.OtherIdentity))
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16] + "…"
	}
	return fmt.Sprintf("%q", id)
}

// SyncReport is what a repair pass did.
type SyncReport struct {
	Objects   int            `json:"objects"` // distinct keys seen
	Copied    map[string]int `json:"copied"`  // store → objects copied into it
	Bytes     int64          `json:"bytes_copied"`
	Corrupt   []string       `json:"corrupt"` // copies that failed verification (left in place)
	Conflicts []Conflict     `json:"conflicts"`
	Failed    []string       `json:"failed"` // copies that could not be made
}

// Sync copies every object a store is missing from a store that holds a
// verified copy, under prefix, in key order, the stores in the order they
// were given. Objects present in several stores with different sizes are
// compared by identity; a conflict is reported, never resolved. Keys that
// Options.Local claims are left alone.
func (s *Store) Sync(ctx context.Context, prefix string) (SyncReport, error) {
	rep := SyncReport{Copied: map[string]int{}, Corrupt: []string{}, Conflicts: []Conflict{}, Failed: []string{}}
	have := make([]map[string]int64, len(s.members))
	union := map[string]bool{}
	var order []string
	for i, m := range s.members {
		have[i] = map[string]int64{}
		err := m.Store.List(ctx, prefix, func(info store.Info) error {
			if s.opt.Local != nil && s.opt.Local(info.Key) {
				return nil
			}
			have[i][info.Key] = info.Size
			if !union[info.Key] {
				union[info.Key] = true
				order = append(order, info.Key)
			}
			return nil
		})
		if err != nil {
			m.report(err)
			return rep, fmt.Errorf("list %s: %w", m.Name, err)
		}
		m.report(nil)
	}
	rep.Objects = len(union)
	sort.Strings(order)
	for _, key := range order {
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
		d, err := s.readVerified(ctx, s.members[i].Store, key)
		if err == nil {
			data = d
			break
		}
		if errors.Is(err, errkind.ErrCorrupt) {
			rep.Corrupt = append(rep.Corrupt, s.members[i].Name+": "+key)
		}
	}
	if data == nil {
		rep.Failed = append(rep.Failed, key+": no store has a verified copy")
		return
	}
	for _, i := range lacking {
		m := s.members[i]
		err := m.Store.Put(ctx, key, store.Bytes(data))
		if err != nil && !errors.Is(err, errkind.ErrExists) {
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

// checkConflict compares the copies of a key the stores hold in
// different sizes: each is read and verified; a damaged copy is reported
// as corrupt and left out, and the intact ones are compared by identity.
// Two identical copies are never reported as a conflict because a third
// could not be read.
func (s *Store) checkConflict(ctx context.Context, key string, holders []int, rep *SyncReport) {
	first, firstStore := "", -1
	for _, i := range holders {
		data, err := s.readVerified(ctx, s.members[i].Store, key)
		if errors.Is(err, errkind.ErrCorrupt) {
			rep.Corrupt = append(rep.Corrupt, s.members[i].Name+": "+key)
			continue
		}
		if err != nil {
			continue
		}
		id, err := s.opt.Identity(key, bytes.NewReader(data))
		if err != nil {
			continue
		}
		if firstStore < 0 {
			first, firstStore = id, i
			continue
		}
		if id != first {
			rep.Conflicts = append(rep.Conflicts, Conflict{Key: key, Store: s.members[firstStore].Name, StoreIdentity: first, Other: s.members[i].Name, OtherIdentity: id})
		}
	}
}
