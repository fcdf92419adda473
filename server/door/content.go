package door

import (
	"context"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/wal"
)

// The content checks. A segment's (archive.SegmentCheck: its pages and
// records as PostgreSQL's reader reads them) runs as the body is
// verified, in envelope.go, and refuses with BadWAL; checkSmall reads
// the small files whose content must fit the archive.

// checkSmall checks the decoded content of a history file, backup label
// or system binding held in memory (obj: the whole envelope) against
// the archive (archive.Rules.CheckContent); nothing for other objects.
func (d *Door) checkSmall(ctx context.Context, k archive.Key, hdr envelope.Header, obj []byte) error {
	if !archive.NeedsContent(k, hdr) {
		return nil
	}
	raw, err := archive.Decode(obj, wal.MaxHistorySize)
	if err != nil {
		return err
	}
	return d.rules.CheckContent(ctx, k, hdr, raw)
}
