package store

import (
	"context"
	"io"
)

// Loader is implemented by stores that read an object through a
// consumer inside their own retries (retrystore): when the consumer fails
// for a passing reason (a connection cut mid-body) or because what it
// read did not verify (errkind.ErrCorrupt: a copy damaged on the way or
// at rest, another copy may be good), the whole get-and-consume runs
// again, under the store's rules: a corrupt read once more, never more.
type Loader interface {
	Load(ctx context.Context, key string, consume func(io.Reader) error) error
}

// Load reads key through consume: retried by s when s is a Loader,
// once otherwise. This is the one way to read and verify an object, so
// no caller writes its own "read again if corrupt" loop. Only the
// outermost store is asked: a wrapper above a Loader (a cache) keeps its
// own meaning of Get.
func Load(ctx context.Context, s Store, key string, consume func(io.Reader) error) error {
	if l, ok := s.(Loader); ok {
		return l.Load(ctx, key, consume)
	}
	rc, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	return consume(rc)
}
