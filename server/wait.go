package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/httpstore"
)

// MaxWait bounds how long a GET may wait for an object: a standby's
// restore_command must return soon enough not to delay its promotion or
// shutdown.
const MaxWait = 30 * time.Second

// waiters lets a GET wait for a key that is not stored yet and wakes it
// when a put stores that key (archive-fed standbys see a new segment
// within a fraction of a second instead of at their next poll).
type waiters struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

// wait returns a channel closed when key is stored.
func (w *waiters) wait(key string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.ch[key]
	if !ok {
		c = make(chan struct{})
		w.ch[key] = c
	}
	return c
}

// stored wakes every waiter of key.
func (w *waiters) stored(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.ch[key]; ok {
		close(c)
		delete(w.ch, key)
	}
}

// getWaiting gets key, and if it is not there and the request asked to
// wait (Walstore-Wait), waits until it is stored or the wait ends. Several
// walstored instances may share one store: a put through another instance
// wakes no one here, so the store is looked at again every second too.
func (s *Server) getWaiting(r *http.Request, store archive.Store, key string) (io.ReadCloser, error) {
	rc, err := store.Get(r.Context(), key)
	if err == nil || !errors.Is(err, archive.ErrNotFound) {
		return rc, err
	}
	d, perr := time.ParseDuration(r.Header.Get(httpstore.HeaderWait))
	if perr != nil || d <= 0 {
		return nil, err
	}
	d = min(d, MaxWait)
	note(r, "waited", true)
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	for {
		ready := s.waiting.wait(key)
		// Look again after registering: a put may have landed in between.
		rc, err := store.Get(r.Context(), key)
		if err == nil || !errors.Is(err, archive.ErrNotFound) {
			return rc, err
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ready:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		t.Stop()
	}
}
