package archive_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
)

func TestContentsCheck(t *testing.T) {
	pack := strings.Repeat("ab", 32)
	good := archive.Contents{Packs: []string{pack}, Entries: []archive.Entry{
		{Path: "base", Dir: true},
		{Path: "base/1/2", Size: 10, Blocks: []archive.Block{{Pack: 0, Off: 0, Len: 4}, {Pack: 0, Off: 4, Len: 6}}},
		{Path: "pg_tblspc/16384", Link: "/srv/space"},
		{Path: "empty"},
	}}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]func(c *archive.Contents){
		"escaping path":      func(c *archive.Contents) { c.Entries[1].Path = "../etc/passwd" },
		"absolute path":      func(c *archive.Contents) { c.Entries[1].Path = "/etc/passwd" },
		"inner ..":           func(c *archive.Contents) { c.Entries[1].Path = "base/../../x" },
		"pack out of range":  func(c *archive.Contents) { c.Entries[1].Blocks[1].Pack = 1 },
		"short blocks":       func(c *archive.Contents) { c.Entries[1].Size = 11 },
		"bad pack id":        func(c *archive.Contents) { c.Packs[0] = "ABC" },
		"link outside":       func(c *archive.Contents) { c.Entries[2].Path = "base/x" },
		"relative link":      func(c *archive.Contents) { c.Entries[2].Link = "space" },
		"negative length":    func(c *archive.Contents) { c.Entries[1].Blocks[0].Len = -4 },
		"link with contents": func(c *archive.Contents) { c.Entries[2].Blocks = []archive.Block{{Len: 1}} },
	} {
		c := good
		c.Packs = append([]string(nil), good.Packs...)
		c.Entries = append([]archive.Entry(nil), good.Entries...)
		c.Entries[1].Blocks = append([]archive.Block(nil), good.Entries[1].Blocks...)
		bad(&c)
		if err := c.Check(); !errors.Is(err, errkind.ErrCorrupt) && !errors.Is(err, errkind.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPackKeys(t *testing.T) {
	id := strings.Repeat("0f", 32)
	k, err := archive.ParseKey(archive.Layout{Archive: "main"}.Pack(id))
	if err != nil || k.Kind != archive.KindPack || k.Pack != id {
		t.Fatalf("%+v %v", k, err)
	}
	if !archive.IsPack(archive.Layout{Archive: "main"}.Pack(id)) {
		t.Error("a pack's key is not a pack's (walstored would cache packs)")
	}
	for _, bad := range []string{"main/packs/" + strings.ToUpper(id), "main/packs/abc", "main/packs/" + id + "/x"} {
		if _, err := archive.ParseKey(bad); err == nil {
			t.Errorf("%s parsed", bad)
		}
		if archive.IsPack(bad) {
			t.Errorf("%s taken for a pack", bad)
		}
	}
	if archive.IsPack(archive.Layout{Archive: "main"}.WALPrefix() + "000000010000000000000001") {
		t.Error("a segment taken for a pack (walstored would not cache WAL)")
	}
}
