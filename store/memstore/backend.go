package memstore

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// Backend is the memory store in the registry (store/storeurl):
// mem://NAME is one store per name for the life of the process, so that
// two opens of one URL see the same objects (tests, and the example of
// what a new backend takes: this file and one line in storeurl).
var Backend = store.Backend{
	Name:     "memory (this process only)",
	Schemes:  []string{"mem"},
	Example:  "mem://scratch",
	Volatile: true,
	Check: func(rawURL string) error {
		_, err := nameOf(rawURL)
		return err
	},
	Open: func(_ context.Context, rawURL string, _ store.Access) (store.Store, error) {
		name, err := nameOf(rawURL)
		if err != nil {
			return nil, err
		}
		s, _ := named.LoadOrStore(name, New())
		return s.(*Store), nil
	},
}

var named sync.Map // name → *Store

func nameOf(rawURL string) (string, error) {
	name, ok := strings.CutPrefix(rawURL, "mem://")
	if !ok || name == "" || strings.ContainsAny(name, "/?#") {
		return "", fmt.Errorf("%w: repository URL %q: want mem://name", errkind.ErrInvalid, rawURL)
	}
	return name, nil
}
