// Package storeurl is the backend registry: it opens the store a
// repository URL names, by its scheme, through the backend that answers
// it. Each backend brings its own URL parsing and credentials
// (store.Backend); this table is the only place that lists them all:
//
//	http://host:port, https://host:port   a walstored (httpstore), or several, comma-separated
//	file:///path, file://./relative        a directory (filestore)
//	s3://bucket/prefix?endpoint=...        S3 or MinIO (s3store)
//	mem://name                             memory, this process only (memstore)
//
// A new store is a new package with a store.Backend and one line here.
package storeurl

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/store/s3store"
)

// backends is the registry.
var backends = []*store.Backend{
	&httpstore.Backend,
	&filestore.Backend,
	&s3store.Backend,
	&memstore.Backend,
}

// Lookup returns the backend for rawURL's scheme (a comma-separated list
// is walstored's).
func Lookup(rawURL string) (*store.Backend, error) {
	scheme, _, ok := strings.Cut(rawURL, "://")
	if _, list := httpstore.List(rawURL); list {
		scheme, ok = "http", true
	}
	if ok {
		for _, b := range backends {
			if slices.Contains(b.Schemes, scheme) {
				return b, nil
			}
		}
	}
	var kinds []string
	for _, b := range backends {
		kinds = append(kinds, b.Example)
	}
	return nil, fmt.Errorf("%w: repository URL %q: want one of %s", errkind.ErrInvalid, rawURL, strings.Join(kinds, ", "))
}

// Check parses rawURL without connecting to anything, so that a mistyped
// repository is reported before any work is done. A volatile store (the
// memory store) is refused: every command's repository must outlive it.
func Check(rawURL string) error {
	b, err := Lookup(rawURL)
	if err != nil {
		return err
	}
	if err := b.Check(rawURL); err != nil {
		return err
	}
	if b.Volatile {
		return fmt.Errorf("%w: repository URL %q: %s keeps nothing past this process (it is for tests); want a store that lasts", errkind.ErrInvalid, rawURL, b.Name)
	}
	return nil
}

// Open returns the store for rawURL.
func Open(ctx context.Context, rawURL string, a store.Access) (store.Store, error) {
	b, err := Lookup(rawURL)
	if err != nil {
		return nil, err
	}
	return b.Open(ctx, rawURL, a)
}

// Served reports whether rawURL names a walstored (or several): what
// clients reach, never a store walstored fronts.
func Served(rawURL string) bool {
	b, err := Lookup(rawURL)
	return err == nil && b.Served
}

// Storage checks that rawURL names a store walstored can front (not
// another walstored): for walstored init and serve's --store.
func Storage(rawURL string) (*store.Backend, error) {
	b, err := Lookup(rawURL)
	if err != nil {
		return nil, err
	}
	if err := Check(rawURL); err != nil {
		return nil, err
	}
	if b.Served {
		var kinds []string
		for _, o := range backends {
			if !o.Served {
				kinds = append(kinds, o.Example)
			}
		}
		return nil, fmt.Errorf("%w: %s is a walstored: walstored fronts a store (%s), not another walstored", errkind.ErrInvalid, rawURL, strings.Join(kinds, ", "))
	}
	return b, nil
}

// Create makes what must exist before a repository can be made at
// rawURL (a file store's directory); nothing for the others.
func Create(ctx context.Context, rawURL string) error {
	b, err := Storage(rawURL)
	if err != nil {
		return err
	}
	if b.Create == nil {
		return nil
	}
	return b.Create(ctx, rawURL)
}
