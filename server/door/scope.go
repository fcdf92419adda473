package door

import (
	"strings"

	"github.com/walstore/walstore/server/auth"
)

// Op is what a request on path (the key within its archive) needs of a
// client's scope: a put of WAL files (and of a .backup label kept beside
// another) needs push; a put of a backup's objects or packs needs backup
// (write-once stores keep it from replacing any); any other put needs
// admin. Other operations need what they are.
func Op(op auth.Op, path string) auth.Op {
	if op != auth.OpPut {
		return op
	}
	switch {
	case strings.HasPrefix(path, "wal/") || strings.HasPrefix(path, "meta/labels/"):
		return auth.OpPutWAL
	case strings.HasPrefix(path, "backups/") || strings.HasPrefix(path, "packs/"):
		return auth.OpPutBackup
	}
	return op
}

// Refusal is why client c may not do op on path in archive a ("" when
// it may).
func Refusal(c *auth.Client, op auth.Op, a, path string) string {
	op = Op(op, path)
	if c.Allows(op, a) {
		return ""
	}
	what := "archive " + a
	if a == "" {
		what = "every archive"
	}
	needs := map[auth.Op]string{auth.OpPut: "admin", auth.OpPutWAL: "scope push or admin", auth.OpPutBackup: "scope backup or admin"}[op]
	if needs != "" {
		return "client " + c.Name + " (scope " + c.Scope.String() + ") may not put " + a + "/" + path + ": that needs " + needs
	}
	return "client " + c.Name + " (scope " + c.Scope.String() + ") may not " + string(op) + " in " + what
}
