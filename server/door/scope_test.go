package door

import (
	"strings"
	"testing"

	"github.com/walstore/walstore/server/auth"
)

// Each scope, and what it must not do.
func TestScope(t *testing.T) {
	client := func(scope string) *auth.Client {
		sc, err := auth.ParseScope(scope)
		if err != nil {
			t.Fatal(err)
		}
		return &auth.Client{Name: "c", Scope: sc, Archives: []string{"main"}}
	}
	for _, tc := range []struct {
		scope, path string
		op          auth.Op
		ok          bool
	}{
		{"push", "wal/000000010000000000000002", auth.OpPut, true},
		{"push", "meta/labels/x", auth.OpPut, true},
		{"push", "backups/b/contents", auth.OpPut, false},
		{"push", "meta/system", auth.OpPut, false},
		{"push", "wal/000000010000000000000002", auth.OpDelete, false},
		{"backup", "packs/abc", auth.OpPut, true},
		{"backup", "backups/b/contents", auth.OpPut, true},
		{"backup", "wal/000000010000000000000002", auth.OpPut, false},
		{"backup", "packs/abc", auth.OpDelete, false},
		{"fetch", "wal/000000010000000000000002", auth.OpGet, true},
		{"fetch", "wal/000000010000000000000002", auth.OpPut, false},
		{"admin", "meta/system", auth.OpPut, true},
	} {
		msg := Refusal(client(tc.scope), tc.op, "main", tc.path)
		if (msg == "") != tc.ok {
			t.Errorf("%s %s %s: refusal %q", tc.scope, tc.op, tc.path, msg)
		}
		if msg != "" && !strings.Contains(msg, "scope "+tc.scope) {
			t.Errorf("%s %s %s: the refusal does not name the scope: %q", tc.scope, tc.op, tc.path, msg)
		}
	}
	// Another archive, whatever the scope.
	if Refusal(client("admin"), auth.OpGet, "crm", "wal/x") == "" {
		t.Error("a token for main reads crm")
	}
}
