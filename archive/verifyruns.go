package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
)

// What walstored verify found, kept for the next run and for the
// commands that show an archive's state (archives, the status page, the
// metrics), which do not read every object themselves.

// VerifyResult is the small record of the last verify.
type VerifyResult struct {
	At   time.Time `json:"at"`
	Full bool      `json:"full"` // every object read, not only what was new
	OK   bool      `json:"ok"`
	// Broken are the objects that did not verify or that recovery could
	// not read, as they were when verify read them.
	Broken []BrokenObject `json:"broken"`
	// Problems counts every problem verify reported (gaps and dead
	// branches included).
	Problems int `json:"problems"`
}

// BrokenObject is one object verify found broken.
type BrokenObject struct {
	Key     string    `json:"key"`
	ModTime time.Time `json:"mod_time"` // of the copy verify read: a new copy since is not this one
	Error   string    `json:"error"`
}

// VerifyChecked is what the last verify found intact, by key: an object
// listed with the same size and time is not read again (unless --full).
type VerifyChecked struct {
	At      time.Time                `json:"at"`
	Objects map[string]CheckedObject `json:"objects"`
	// Blocks are, by pack, the blocks (sha256@offset+length) verify
	// --deep found where backups list them.
	Blocks map[string]map[string]bool `json:"blocks,omitempty"`
}

// CheckedObject is one object that passed verify.
type CheckedObject struct {
	Size    int64               `json:"size"`
	ModTime time.Time           `json:"mod_time"`
	Segment *wal.SegmentSummary `json:"segment,omitempty"` // for the checks across segment boundaries
}

// PutVerifyRecords writes the last verify's result and what passed it,
// replacing the records of the run before.
func (a *Archive) PutVerifyRecords(ctx context.Context, res VerifyResult, checked VerifyChecked) error {
	if err := a.replaceJSON(ctx, a.Layout.VerifyChecked(), checked); err != nil {
		return err
	}
	return a.replaceJSON(ctx, a.Layout.VerifyResult(), res)
}

// LastVerify returns the last verify's result; nil if none was recorded.
func (a *Archive) LastVerify(ctx context.Context) (*VerifyResult, error) {
	r, err := readRecordPtr[VerifyResult](ctx, a, a.Layout.VerifyResult())
	if errors.Is(err, errkind.ErrNotFound) {
		return nil, nil
	}
	return r, err
}

// LastChecked returns what the last verify found intact (empty if none).
func (a *Archive) LastChecked(ctx context.Context) (VerifyChecked, error) {
	b, _, err := a.ReadAll(ctx, a.Layout.VerifyChecked(), 1<<30)
	if errors.Is(err, errkind.ErrNotFound) {
		return VerifyChecked{Objects: map[string]CheckedObject{}, Blocks: map[string]map[string]bool{}}, nil
	}
	if err != nil {
		return VerifyChecked{}, err
	}
	var c VerifyChecked
	if err := json.Unmarshal(b, &c); err != nil {
		return VerifyChecked{}, fmt.Errorf("%w: %s: %v", errkind.ErrCorrupt, a.Layout.VerifyChecked(), err)
	}
	if c.Objects == nil {
		c.Objects = map[string]CheckedObject{}
	}
	if c.Blocks == nil {
		c.Blocks = map[string]map[string]bool{}
	}
	return c, nil
}
