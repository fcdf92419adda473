package archive_test

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/internal/testenv"
)

// Headers of segments written by a real PostgreSQL 15 (1 MiB and 16 MiB
// segments) parse, match their names, and carry pg_control's system
// identifier.
func TestPageHeaderOfRealSegments(t *testing.T) {
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
			hdr, err := archive.ReadPageHeader(f)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			name, _ := archive.ParseName(filepath.Base(p))
			err = archive.CheckSegment(name, int64(mb)<<20, hdr)
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
			if err := archive.CheckSegment(name.Next(hdr.SegmentSize), hdr.SegmentSize, hdr); !errors.Is(err, archive.ErrInvalid) {
				t.Errorf("%s accepted under the next segment's name", p)
			}
			if err := archive.CheckSegment(name, hdr.SegmentSize/2, hdr); !errors.Is(err, archive.ErrInvalid) {
				t.Errorf("%s accepted at half its size", p)
			}
		}
	}
}

func header(mod func(b []byte)) []byte {
	b := make([]byte, archive.LongPageHeaderSize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)
	le.PutUint16(b[2:], 0x0002)
	le.PutUint32(b[4:], 1)
	le.PutUint64(b[8:], 3<<24)
	le.PutUint64(b[24:], 7300000000000000001)
	le.PutUint32(b[32:], 16<<20)
	le.PutUint32(b[36:], 8192)
	if mod != nil {
		mod(b)
	}
	return b
}

func TestParsePageHeaderRefusesNonsense(t *testing.T) {
	le := binary.LittleEndian
	if _, err := archive.ParsePageHeader(header(nil)); err != nil {
		t.Fatalf("valid header refused: %v", err)
	}
	for name, b := range map[string][]byte{
		"zeros":         make([]byte, 40),
		"short":         header(nil)[:20],
		"magic":         header(func(b []byte) { le.PutUint16(b[0:], 0x1234) }),
		"short header":  header(func(b []byte) { le.PutUint16(b[2:], 0) }),
		"unknown flags": header(func(b []byte) { le.PutUint16(b[2:], 0x0102) }),
		"timeline 0":    header(func(b []byte) { le.PutUint32(b[4:], 0) }),
		"segsize 3 MiB": header(func(b []byte) { le.PutUint32(b[32:], 3<<20) }),
		"segsize 2 GiB": header(func(b []byte) { le.PutUint32(b[32:], 1<<31) }),
		"block 100":     header(func(b []byte) { le.PutUint32(b[36:], 100) }),
		"sysid 0":       header(func(b []byte) { le.PutUint64(b[24:], 0) }),
		"mid-segment":   header(func(b []byte) { le.PutUint64(b[8:], 3<<24+8192) }),
	} {
		if _, err := archive.ParsePageHeader(b); !errors.Is(err, archive.ErrInvalid) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
	hdr, _ := archive.ParsePageHeader(header(nil))
	for name, seg := range map[string]string{
		"position":       "000000010000000000000004",
		"later timeline": "000000010000000000000003",
	} {
		n, _ := archive.ParseName(seg)
		err := archive.CheckSegment(n, 16<<20, hdr)
		if name == "later timeline" && err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if name == "position" && err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The first segment of timeline 2 starts with pages of timeline 1.
	n2, _ := archive.ParseName("000000020000000000000003")
	if err := archive.CheckSegment(n2, 16<<20, hdr); err != nil {
		t.Errorf("timeline switch segment refused: %v", err)
	}
	hdr3, _ := archive.ParsePageHeader(header(func(b []byte) { le.PutUint32(b[4:], 3) }))
	if err := archive.CheckSegment(n2, 16<<20, hdr3); err == nil {
		t.Error("a segment holding a later timeline than its name was accepted")
	}
}
