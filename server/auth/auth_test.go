package auth

import (
	"strings"
	"testing"
)

func TestParseAndAuthorize(t *testing.T) {
	tokA, _ := NewToken()
	tokB, _ := NewToken()
	tokC, _ := NewToken()
	la, _ := Line("db1", Push, []string{"billing"}, tokA)
	lb, _ := Line("standby-a", Fetch, []string{"billing", "crm"}, tokB)
	lc, _ := Line("ops", Admin, nil, tokC)
	s, err := Parse(strings.NewReader("# clients\n\n" + la + "\n" + lb + "\n  " + lc + "  \n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 3 {
		t.Fatalf("%d clients", s.Len())
	}
	for _, tc := range []struct {
		token   string
		op      Op
		archive string
		want    bool
	}{
		{tokA, OpPutWAL, "billing", true},
		{tokA, OpPut, "billing", false},
		{tokA, OpGet, "billing", true},
		{tokA, OpDelete, "billing", false},
		{tokA, OpList, "billing", true},
		{tokA, OpList, "crm", false},
		{tokA, OpPut, "crm", false},
		{tokB, OpGet, "crm", true},
		{tokB, OpList, "billing", true},
		{tokB, OpPut, "billing", false},
		{tokB, OpDelete, "billing", false},
		{tokB, OpGet, "other", false},
		{tokC, OpDelete, "anything", true},
		{tokC, OpList, "", true},
		{tokB, OpList, "", false},
	} {
		c, ok := s.Authenticate(tc.token)
		if !ok {
			t.Fatalf("token not recognised")
		}
		if got := c.Allows(tc.op, tc.archive); got != tc.want {
			t.Errorf("%s %s %q: %v, want %v", c.Name, tc.op, tc.archive, got, tc.want)
		}
	}
	if _, ok := s.Authenticate("wst_nope"); ok {
		t.Error("unknown token accepted")
	}
	if _, ok := s.Authenticate(""); ok {
		t.Error("empty token accepted")
	}
}

func TestParseRefusesBadFiles(t *testing.T) {
	h := Hash("x")
	for name, text := range map[string]string{
		"three fields":    "db1 push billing\n",
		"bad scope":       "db1 root billing " + h + "\n",
		"bad archive":     "db1 push ../etc " + h + "\n",
		"token not hash":  "db1 push billing wst_plaintexttoken\n",
		"short hash":      "db1 push billing abcd\n",
		"duplicate name":  "db1 push a " + h + "\ndb1 push b " + Hash("y") + "\n",
		"duplicate token": "db1 push a " + h + "\ndb2 push b " + h + "\n",
		"bad name":        "db/1 push a " + h + "\n",
	} {
		if _, err := Parse(strings.NewReader(text)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "line") {
			t.Errorf("%s: error does not name the line: %v", name, err)
		}
	}
}

// FuzzParseTokenFile: any input is either refused with an error or yields
// clients whose every field is valid; it never panics.
func FuzzParseTokenFile(f *testing.F) {
	f.Add("db1 push billing " + Hash("x") + "\n")
	f.Add("# comment\n\nops admin * " + Hash("y") + "\n")
	f.Add("a fetch a,b,c " + Hash("z") + "\r\nb push c " + Hash("w"))
	f.Add("x push * " + strings.Repeat("0", 64) + "\n\x00\xff")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := Parse(strings.NewReader(text))
		if err != nil {
			return
		}
		for _, c := range s.clients {
			if !validName(c.Name) || c.Scope < Push || c.Scope > Metrics {
				t.Fatalf("invalid client accepted: %+v", c)
			}
		}
	})
}
