package tests

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal"
)

// Headers of segments written by a real PostgreSQL 15 (1 MiB and 16 MiB
// segments) parse, match their names, and carry pg_control's system
// identifier.
func TestPageHeaderOfRealSegments(t *testing.T) {
	t.Parallel()
	for _, mb := range []int{1, 16} {
		c := testenv.NewCluster(t, testenv.Dir(t), "pg"+strconv.Itoa(mb), testenv.ClusterOptions{WalSegSizeMB: mb})
		out, err := exec.Command(filepath.Join(testenv.PGBin, "pg_controldata"), c.Dir).Output()
		if err != nil {
			t.Fatal(err)
		}
		sysid := regexp.MustCompile(`Database system identifier:\s+(\d+)`).FindSubmatch(out)
		redo := string(regexp.MustCompile(`REDO WAL file:\s+(\w+)`).FindSubmatch(out)[1])
		segs, _ := filepath.Glob(filepath.Join(c.Dir, "pg_wal", "000000010000000000000*"))
		if len(segs) == 0 {
			t.Fatal("no segments")
		}
		for _, p := range segs {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			hdr, err := wal.ReadPageHeader(f)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			name, _ := wal.ParseName(filepath.Base(p))
			err = wal.CheckSegment(name, int64(mb)<<20, hdr)
			if filepath.Base(p) > redo {
				// A recycled segment waiting for reuse still carries its old
				// header: PostgreSQL never archives it, and neither may we.
				if err == nil && hdr.PageAddr != name.StartLSN(hdr.SegmentSize) {
					t.Errorf("%s: recycled segment accepted", p)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", p, err)
			}
			if strconv.FormatUint(hdr.SystemID, 10) != string(sysid[1]) || hdr.PGVersion() != 15 || hdr.BlockSize != 8192 {
				t.Errorf("%s: header %+v, pg_control system id %s", p, hdr, sysid[1])
			}
			// The same bytes under a neighbour's name or size are refused.
			if err := wal.CheckSegment(name.Next(hdr.SegmentSize), hdr.SegmentSize, hdr); !errors.Is(err, errkind.ErrInvalid) {
				t.Errorf("%s accepted under the next segment's name", p)
			}
			if err := wal.CheckSegment(name, hdr.SegmentSize/2, hdr); !errors.Is(err, errkind.ErrInvalid) {
				t.Errorf("%s accepted at half its size", p)
			}
		}
	}
}
