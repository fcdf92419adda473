package door

import (
	"context"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
)

// admit asks the archive's rules about what the header claims, before
// the body arrives (archive.Rules.Admit).
func (d *Door) admit(ctx context.Context, key string, hdr envelope.Header, size int64) (archive.Key, error) {
	return d.rules.Admit(ctx, key, hdr, size)
}
