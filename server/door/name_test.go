package door

import (
	"errors"
	"testing"

	"github.com/walstore/walstore/base/errkind"
)

func TestName(t *testing.T) {
	f := newFixture(t, 64<<20)
	_, body := f.segment("000000010000000000000002")
	for _, key := range []string{"../main/wal/000000010000000000000002", "main/elsewhere/x", "main/wal/not-a-wal-name", "bad name/wal/000000010000000000000002"} {
		if _, err := f.put(key, body); !errors.Is(err, errkind.ErrInvalid) || f.stored(key) {
			t.Errorf("%s: %v", key, err)
		}
	}
}
