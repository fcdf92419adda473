package backupset

import (
	"os"
	"path/filepath"
	"testing"
)

// A failed restore into a new directory leaves nothing that could be
// started; a failed delta restore never empties the cluster's directory
// it was run on, and leaves it without a signal file.
func TestAbandonNeverEmptiesADeltaRestoresDirectory(t *testing.T) {
	populate := func(t *testing.T) (pgdata, ts string) {
		root := t.TempDir()
		pgdata, ts = filepath.Join(root, "data"), filepath.Join(root, "ts")
		for _, f := range []string{"data/PG_VERSION", "data/base/1/1259", "data/recovery.signal", "data/standby.signal", "ts/PG_15_202209061/1/16400"} {
			p := filepath.Join(root, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return pgdata, ts
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }

	t.Run("delta", func(t *testing.T) {
		pgdata, ts := populate(t)
		abandon(pgdata, true, false, []string{ts})
		for _, f := range []string{"PG_VERSION", "base/1/1259"} {
			if !exists(filepath.Join(pgdata, f)) {
				t.Errorf("a failed delta restore removed %s from the cluster's directory", f)
			}
		}
		if !exists(filepath.Join(ts, "PG_15_202209061/1/16400")) {
			t.Error("a failed delta restore emptied the cluster's tablespace")
		}
		for _, f := range []string{"recovery.signal", "standby.signal"} {
			if exists(filepath.Join(pgdata, f)) {
				t.Errorf("a failed delta restore left %s: the half-restored cluster could be started", f)
			}
		}
	})
	t.Run("new directory", func(t *testing.T) {
		pgdata, ts := populate(t)
		abandon(pgdata, false, false, []string{ts})
		if ents, _ := os.ReadDir(pgdata); len(ents) != 0 {
			t.Errorf("a failed restore left %d entries in the data directory", len(ents))
		}
		if ents, _ := os.ReadDir(ts); len(ents) != 0 {
			t.Errorf("a failed restore left %d entries in a tablespace", len(ents))
		}
		if !exists(pgdata) {
			t.Error("a directory the restore did not create was removed")
		}
	})
	t.Run("created", func(t *testing.T) {
		pgdata, _ := populate(t)
		abandon(pgdata, false, true, nil)
		if exists(pgdata) {
			t.Error("a directory the failed restore created is still there")
		}
	})
}
