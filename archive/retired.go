package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// RetiredTimeline is the record of a timeline taken out of recovery's
// view (a dead branch): its history file and segments were moved under
// <archive>/retired/<tli>/, where PostgreSQL's restore_command never
// looks, nothing deleted. RestoreTimeline moves them back.
type RetiredTimeline struct {
	Timeline uint32    `json:"timeline"`
	At       time.Time `json:"retired_at"`
	By       string    `json:"retired_by,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	// HistorySHA256 is the digest of the retired history file: a server
	// still on that branch pushing it again is refused.
	HistorySHA256 string   `json:"history_sha256,omitempty"`
	Files         []string `json:"files"`
	Bytes         int64    `json:"bytes"`
	// NewestWrite is when the newest of its files was stored: moved back,
	// they get new modification times, and recovery's choice between
	// branches (catalog) must still see how old they are.
	NewestWrite time.Time `json:"newest_write"`
	// StandIn is the history walfetch serves in place of the retired one
	// (see StandInHistory); "" when the timeline had no history file.
	StandIn string `json:"stand_in_history,omitempty"`
}

// RestoredTimeline is the record of a timeline brought back from
// retirement: its retirement record, and when it came back.
type RestoredTimeline struct {
	RetiredTimeline
	RestoredAt time.Time `json:"restored_at"`
}

// RetiredTimelines returns the archive's retired timelines.
func (a *Archive) RetiredTimelines(ctx context.Context) (map[uint32]RetiredTimeline, error) {
	out := map[uint32]RetiredTimeline{}
	err := a.listTimelineRecords(ctx, KindRetiredRecord, func(tli uint32, b []byte, key string) error {
		var r RetiredTimeline
		if err := json.Unmarshal(b, &r); err != nil || r.Timeline != tli {
			return fmt.Errorf("%w: %s is not a retirement record", errkind.ErrCorrupt, key)
		}
		out[tli] = r
		return nil
	})
	return out, err
}

// RestoredTimelines returns the timelines brought back from retirement.
func (a *Archive) RestoredTimelines(ctx context.Context) (map[uint32]RestoredTimeline, error) {
	out := map[uint32]RestoredTimeline{}
	err := a.listTimelineRecords(ctx, KindRestoredRecord, func(tli uint32, b []byte, key string) error {
		var r RestoredTimeline
		if err := json.Unmarshal(b, &r); err != nil || r.Timeline != tli {
			return fmt.Errorf("%w: %s is not a restored timeline's record", errkind.ErrCorrupt, key)
		}
		out[tli] = r
		return nil
	})
	return out, err
}

func (a *Archive) listTimelineRecords(ctx context.Context, kind KeyKind, fn func(tli uint32, b []byte, key string) error) error {
	return a.Store.List(ctx, a.Name+"/"+retiredDir+"/", func(info store.Info) error {
		k, err := ParseKey(info.Key)
		if err != nil || k.Kind != kind {
			return nil
		}
		b, _, err := a.ReadAll(ctx, info.Key, 16<<20)
		if err != nil {
			return err
		}
		return fn(k.TLI, b, info.Key)
	})
}

// RetireTimeline moves timeline tli's history file and every WAL file of
// that timeline out of recovery's view, recording who did it and why.
// The record is written first; an interrupted retirement is completed by
// running it again. Nothing is deleted before its copy is stored.
func (a *Archive) RetireTimeline(ctx context.Context, tli uint32, by, reason string) (RetiredTimeline, error) {
	if tli < 2 {
		return RetiredTimeline{}, fmt.Errorf("%w: timeline %d cannot be retired (only a timeline made by a promotion can)", errkind.ErrInvalid, tli)
	}
	rec := RetiredTimeline{Timeline: tli, At: time.Now().UTC(), By: by, Reason: reason, Files: []string{}}
	hist := wal.Name{Kind: wal.History, TLI: tli}
	if hdr, err := StatHeader(ctx, a.Store, a.Layout.WAL(hist)); err == nil {
		rec.HistorySHA256 = hdr.Digest.String()
	} else if !errors.Is(err, errkind.ErrNotFound) {
		return rec, err
	}
	var files []store.Info
	err := a.Store.List(ctx, a.Layout.WALPrefix()+fmt.Sprintf("%08X", tli), func(info store.Info) error {
		k, err := ParseKey(info.Key)
		if err == nil && k.Kind == KindWAL && k.WAL.TLI == tli {
			files = append(files, info)
		}
		return nil
	})
	if err != nil {
		return rec, err
	}
	old, err := a.RetiredTimelines(ctx)
	if err != nil {
		return rec, err
	}
	if prev, ok := old[tli]; ok {
		rec = prev // finishing an interrupted retirement, or adding late files
	}
	if rec.StandIn == "" && rec.HistorySHA256 != "" {
		if rec.StandIn, err = a.standIn(ctx, tli); err != nil {
			return rec, err
		}
	}
	if len(files) == 0 && rec.HistorySHA256 == "" {
		if _, ok := old[tli]; ok {
			return rec, nil
		}
		return rec, fmt.Errorf("%w: archive %s has no timeline %d", errkind.ErrNotFound, a.Name, tli)
	}
	names := map[string]bool{}
	for _, f := range rec.Files {
		names[f] = true
	}
	for _, f := range files {
		if f.ModTime.After(rec.NewestWrite) {
			rec.NewestWrite = f.ModTime.UTC()
		}
		k, _ := ParseKey(f.Key)
		if !names[k.WAL.String()] {
			names[k.WAL.String()] = true
			rec.Files = append(rec.Files, k.WAL.String())
			rec.Bytes += f.Size
		}
	}
	sort.Strings(rec.Files)
	if err := a.putRetiredRecord(ctx, rec); err != nil {
		return rec, err
	}
	for _, f := range files {
		k, _ := ParseKey(f.Key)
		if err := a.moveObject(ctx, f.Key, a.Layout.Retired(tli, k.WAL)); err != nil {
			return rec, err
		}
	}
	return rec, nil
}

// RestoreTimeline brings a retired timeline back into recovery's view.
// A live file of the same name with other content (the name was taken
// again since) is a conflict, reported, and the retired copy stays.
func (a *Archive) RestoreTimeline(ctx context.Context, tli uint32) (RetiredTimeline, error) {
	old, err := a.RetiredTimelines(ctx)
	if err != nil {
		return RetiredTimeline{}, err
	}
	rec, ok := old[tli]
	if !ok {
		return rec, fmt.Errorf("%w: timeline %d of archive %s is not retired", errkind.ErrNotFound, tli, a.Name)
	}
	var moved []store.Info
	err = a.Store.List(ctx, a.Layout.RetiredPrefix(tli)+walDir+"/", func(info store.Info) error {
		moved = append(moved, info)
		return nil
	})
	if err != nil {
		return rec, err
	}
	for _, f := range moved {
		k, err := ParseKey(f.Key)
		if err != nil || k.Kind != KindRetiredWAL {
			continue
		}
		if err := a.moveObject(ctx, f.Key, a.Layout.WAL(k.WAL)); err != nil {
			return rec, err
		}
	}
	back := RestoredTimeline{RetiredTimeline: rec, RestoredAt: time.Now().UTC()}
	if err := a.replaceJSON(ctx, a.Layout.RestoredRecord(tli), back); err != nil {
		return rec, err
	}
	if err := a.Store.Delete(ctx, a.Layout.RetiredRecord(tli)); err != nil && !errors.Is(err, errkind.ErrNotFound) {
		return rec, err
	}
	return rec, nil
}

func (a *Archive) putRetiredRecord(ctx context.Context, rec RetiredTimeline) error {
	return a.replaceJSON(ctx, a.Layout.RetiredRecord(rec.Timeline), rec)
}

// moveObject copies an object to a new key (where its binding still
// names the live file, see Identity) and deletes the old one only once
// the copy is stored; a copy already there with the same content is fine.
func (a *Archive) moveObject(ctx context.Context, from, to string) error {
	b, err := readRaw(ctx, a.Store, from)
	if err != nil {
		return err
	}
	err = a.Store.Put(ctx, to, store.Bytes(b))
	if errors.Is(err, errkind.ErrExists) {
		same, cerr := sameContent(ctx, a.Store, to, b)
		if cerr != nil {
			return cerr
		}
		if !same {
			return fmt.Errorf("%w: %s exists with other content than %s; both left as they are", errkind.ErrConflict, to, from)
		}
		err = nil
	}
	if err != nil {
		return err
	}
	if err := a.Store.Delete(ctx, from); err != nil && !errors.Is(err, errkind.ErrNotFound) {
		return err
	}
	return nil
}

func readRaw(ctx context.Context, s store.Store, key string) ([]byte, error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, envelope.MaxObjectSize+1))
}

func sameContent(ctx context.Context, s store.Store, key string, b []byte) (bool, error) {
	hdr, err := StatHeader(ctx, s, key)
	if err != nil {
		return false, err
	}
	mine, err := Identify(key, bytes.NewReader(b))
	if err != nil {
		return false, err
	}
	return hdr.Digest.String() == mine, nil
}

// StandInHistory is the history walfetch serves, in place of the dead
// branch's own, for retired timeline tli that forked from parent, whose
// history (nil for timeline 1) is given: the parent's lines, then the
// parent ending at the highest position there is.
//
// PostgreSQL reads it as a timeline that holds no WAL: its parent holds
// everything. So a promotion's probe for a free timeline number
// (findNewestTimeLine) sees the number taken and never reuses it (two
// different timelines would share its segment names), and a recovery
// that follows the number (recovery_target_timeline = 'latest', when it
// is the highest) replays the parent's WAL, not the dead branch's. A
// timeline made later from it names it as its parent; the door and the
// catalog read this stand-in for it.
func StandInHistory(tli, parent uint32, parentHistory []wal.HistoryEntry) []byte {
	entries := append(append([]wal.HistoryEntry{}, parentHistory...), wal.HistoryEntry{
		TLI: parent, SwitchPoint: wal.LSN(^uint64(0)),
		Reason: fmt.Sprintf("timeline %d was retired as a dead branch: its number stays taken, and it holds no WAL", tli),
	})
	return wal.FormatHistory(entries)
}

// standIn makes the stand-in history of timeline tli, about to be
// retired, from its history file and its parent's.
func (a *Archive) standIn(ctx context.Context, tli uint32) (string, error) {
	b, _, err := a.ReadAll(ctx, a.Layout.WAL(wal.Name{Kind: wal.History, TLI: tli}), wal.MaxHistorySize)
	if err != nil {
		return "", fmt.Errorf("read the history of timeline %d: %w", tli, err)
	}
	h, err := wal.ParseHistory(tli, b)
	if err != nil {
		return "", err
	}
	l := wal.EffectiveLineage(tli, h)
	parent := l[len(l)-2].TLI
	var ph []wal.HistoryEntry
	if parent > 1 {
		if ph, err = a.History(ctx, parent); err != nil {
			return "", err
		}
	}
	return string(StandInHistory(tli, parent, ph)), nil
}

// History returns the parsed history file of timeline tli as the archive
// holds it, or, for a retired timeline, its stand-in (StandInHistory).
func (a *Archive) History(ctx context.Context, tli uint32) ([]wal.HistoryEntry, error) {
	b, _, err := a.ReadAll(ctx, a.Layout.WAL(wal.Name{Kind: wal.History, TLI: tli}), wal.MaxHistorySize)
	if errors.Is(err, errkind.ErrNotFound) {
		rec, rerr := a.RetiredRecord(ctx, tli)
		if rerr != nil || rec == nil || rec.StandIn == "" {
			return nil, err
		}
		b, err = []byte(rec.StandIn), nil
	}
	if err != nil {
		return nil, err
	}
	return wal.ParseHistory(tli, b)
}

// RetiredRecord reads timeline tli's retirement record; nil if it is not
// retired.
func (a *Archive) RetiredRecord(ctx context.Context, tli uint32) (*RetiredTimeline, error) {
	b, _, err := a.ReadAll(ctx, a.Layout.RetiredRecord(tli), 16<<20)
	if errors.Is(err, errkind.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r RetiredTimeline
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errkind.ErrCorrupt, a.Layout.RetiredRecord(tli), err)
	}
	return &r, nil
}
