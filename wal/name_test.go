package wal

import (
	"errors"
	"sort"
	"testing"

	"github.com/walstore/walstore/base/errkind"
)

func TestParseName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Name
		ok   bool
	}{
		{"000000010000000000000001", Name{Kind: Segment, TLI: 1, Log: 0, Seg: 1}, true},
		{"0000000A00000003000000FF", Name{Kind: Segment, TLI: 10, Log: 3, Seg: 0xFF}, true},
		{"000000010000000000000FFF", Name{Kind: Segment, TLI: 1, Seg: 0xFFF}, true}, // 1 MiB segments
		{"000000020000000100000002.partial", Name{Kind: Partial, TLI: 2, Log: 1, Seg: 2}, true},
		{"00000002.history", Name{Kind: History, TLI: 2}, true},
		{"000000010000000000000002.00000028.backup", Name{Kind: Backup, TLI: 1, Seg: 2, Offset: 0x28}, true},
		// hostile or malformed
		{"", Name{}, false},
		{"../000000010000000000000001", Name{}, false},
		{"/etc/passwd", Name{}, false},
		{"00000001000000000000000\x00", Name{}, false},
		{"0000000100000000000000001", Name{}, false}, // 25 digits
		{"00000001000000000000001", Name{}, false},   // 23 digits
		{"00000001000000000000000a", Name{}, false},  // lower case
		{"000000000000000000000001", Name{}, false},  // timeline 0
		{"000000010000000000001000", Name{}, false},  // seg beyond any segment size
		{"00000000.history", Name{}, false},
		{"0000000g.history", Name{}, false},
		{"00000002.HISTORY", Name{}, false},
		{"000000010000000000000001.partial.partial", Name{}, false},
		{"000000010000000000000001.0000002.backup", Name{}, false},
		{"000000010000000000000001.00000028.backup/", Name{}, false},
		{"000000010000000000000001\n", Name{}, false},
		{"RECOVERYXLOG", Name{}, false},
		{"00000001000000000000000１", Name{}, false}, // full-width digit
	} {
		got, err := ParseName(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseName(%q): err = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if !tc.ok {
			if !errors.Is(err, errkind.ErrInvalid) {
				t.Errorf("ParseName(%q): %v does not wrap errkind.ErrInvalid", tc.in, err)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("ParseName(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("round trip %q -> %q", tc.in, got.String())
		}
	}
}

func TestNextPrev(t *testing.T) {
	n, _ := ParseName("0000000100000000000000FF")
	if got := n.Next(16 << 20).String(); got != "000000010000000100000000" {
		t.Errorf("next of %s with 16 MiB segments = %s", n, got)
	}
	if got := n.Next(1 << 20).String(); got != "000000010000000000000100" {
		t.Errorf("next of %s with 1 MiB segments = %s", n, got)
	}
	m, _ := ParseName("000000010000000100000000")
	if p, ok := m.Prev(16 << 20); !ok || p.String() != "0000000100000000000000FF" {
		t.Errorf("prev of %s = %s %v", m, p, ok)
	}
	if _, ok := (Name{Kind: Segment, TLI: 1}).Prev(16 << 20); ok {
		t.Error("the first segment has a predecessor")
	}
	if n.ValidFor(16<<20) != true || (Name{Kind: Segment, TLI: 1, Seg: 0x100}).ValidFor(16<<20) {
		t.Error("ValidFor")
	}
	if got := LSN(0x1_0200_0028).Segment(3, 16<<20).String(); got != "000000030000000100000002" {
		t.Errorf("LSN.Segment = %s", got)
	}
}

func TestCompareOrdersByTimelineThenPosition(t *testing.T) {
	in := []string{
		"000000020000000000000001",
		"000000010000000100000000",
		"000000010000000000000003.00000028.backup",
		"00000002.history",
		"000000010000000000000003",
		"000000010000000000000002.partial",
		"0000000100000000000000FF",
	}
	want := []string{
		"000000010000000000000002.partial",
		"000000010000000000000003",
		"000000010000000000000003.00000028.backup",
		"0000000100000000000000FF",
		"000000010000000100000000",
		"00000002.history",
		"000000020000000000000001",
	}
	var names []Name
	for _, s := range in {
		n, err := ParseName(s)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return Compare(names[i], names[j]) < 0 })
	for i, n := range names {
		if n.String() != want[i] {
			t.Fatalf("position %d: %s, want %s", i, n, want[i])
		}
	}
}

func TestParseLSN(t *testing.T) {
	for in, want := range map[string]LSN{"0/0": 0, "16/B374D848": 0x16_B374D848, "FFFFFFFF/FFFFFFFF": ^LSN(0)} {
		got, err := ParseLSN(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("ParseLSN(%q) = %v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0", "/1", "1/", "x/1", "100000000/0", "1/2/3"} {
		if _, err := ParseLSN(in); !errors.Is(err, errkind.ErrInvalid) {
			t.Errorf("ParseLSN(%q) accepted", in)
		}
	}
}
