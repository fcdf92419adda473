package door

import (
	"errors"
	"testing"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal/waltest"
)

// What the header claims must fit the archive: the key it is bound to,
// and the system the archive is bound to.
func TestAdmit(t *testing.T) {
	f := newFixture(t, 64<<20)
	key, body := f.segment("000000010000000000000002")
	if _, err := f.put(key, body); err != nil {
		t.Fatal(err)
	}
	// The same envelope under another name: bound to its own key.
	other := archive.Layout{Archive: "main"}.WAL(waltest.Name("000000010000000000000003"))
	if _, err := f.put(other, body); err == nil || f.stored(other) {
		t.Errorf("an envelope under another key: %v", err)
	}
	// Another system's segment.
	n := waltest.Name("000000010000000000000004")
	k := archive.Layout{Archive: "main"}.WAL(n)
	if _, err := f.put(k, f.envelope(k, 8, waltest.Segment(8, n, segSize))); !errors.Is(err, errkind.ErrWrongSystem) || f.stored(k) {
		t.Errorf("another system: %v", err)
	}
}
