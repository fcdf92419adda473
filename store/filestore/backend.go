package filestore

import (
	"context"
	"fmt"
	"strings"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// Backend is the file store in the registry (store/storeurl):
// file:///absolute/path or file://./relative/path.
var Backend = store.Backend{
	Name:    "a directory",
	Schemes: []string{"file"},
	Example: "file:///srv/walstore",
	Check: func(rawURL string) error {
		_, err := PathOf(rawURL)
		return err
	},
	Open: func(_ context.Context, rawURL string, a store.Access) (store.Store, error) {
		dir, err := PathOf(rawURL)
		if err != nil {
			return nil, err
		}
		return Open(dir, Options{ReadOnly: a.ReadOnly})
	},
	Create: func(_ context.Context, rawURL string) error {
		dir, err := PathOf(rawURL)
		if err != nil {
			return err
		}
		_, err = Open(dir, Options{Create: true})
		return err
	},
}

// PathOf is the directory a file:// URL names: file:///abs/path,
// file://localhost/abs/path, or file://./rel/path (relative to the
// working directory).
func PathOf(rawURL string) (string, error) {
	rest, ok := strings.CutPrefix(rawURL, "file://")
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: repository URL %q: %s", errkind.ErrInvalid, rawURL, why)
	}
	switch {
	case !ok:
		return bad("want file:///absolute/path or file://./relative/path")
	case strings.ContainsAny(rest, "?#"):
		return bad("no query or fragment expected")
	case strings.HasPrefix(rest, "/"):
		return rest, nil
	case strings.HasPrefix(rest, "localhost/"):
		return strings.TrimPrefix(rest, "localhost"), nil
	case rest == "." || strings.HasPrefix(rest, "./"):
		return rest, nil
	}
	return bad("want file:///absolute/path or file://./relative/path")
}
