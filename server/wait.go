package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/wire"
	"github.com/walstore/walstore/store"
)

// MaxWait bounds how long a GET may wait for an object: a standby's
// restore_command must return soon enough not to delay its promotion or
// shutdown.
const MaxWait = 30 * time.Second

// maxWaitedKeys bounds the keys being waited for at once; past it, a
// waiting GET still works, by looking at the store once a second.
const maxWaitedKeys = 10000

// waiters lets a GET wait for a key that is not stored yet and wakes it
// when a put stores that key (archive-fed standbys see a new segment
// within a fraction of a second instead of at their next poll). A key's
// entry lives only while someone waits for it.
type waiters struct {
	mu sync.Mutex
	ch map[string]*waited
}

type waited struct {
	c     chan struct{}
	users int
}

func newWaiters() *waiters { return &waiters{ch: map[string]*waited{}} }

// wait returns a channel closed when key is stored, and a release to call
// when no longer waiting. Past the bound, the channel never closes.
func (w *waiters) wait(key string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.ch[key]
	if !ok {
		if len(w.ch) >= maxWaitedKeys {
			return nil, func() {}
		}
		e = &waited{c: make(chan struct{})}
		w.ch[key] = e
	}
	e.users++
	return e.c, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		e.users--
		if e.users == 0 && w.ch[key] == e {
			delete(w.ch, key)
		}
	}
}

// stored wakes every waiter of key.
func (w *waiters) stored(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, ok := w.ch[key]; ok {
		close(e.c)
		delete(w.ch, key)
	}
}

// len is how many keys are waited for (tests, metrics).
func (w *waiters) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ch)
}

// getWaiting gets key, and if it is not there and the request asked to
// wait (Walstore-Wait), waits until it is stored or the wait ends. Several
// walstored instances may share one store: a put through another instance
// wakes no one here, so the store is looked at again every second too.
func (s *Server) getWaiting(r *http.Request, st store.Store, key string) (io.ReadCloser, error) {
	rc, err := st.Get(r.Context(), key)
	if err == nil || !errors.Is(err, errkind.ErrNotFound) {
		return rc, err
	}
	d, perr := time.ParseDuration(r.Header.Get(wire.HeaderWait))
	if perr != nil || d <= 0 {
		return nil, err
	}
	d = min(d, MaxWait)
	note(r, "waited", true)
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	for {
		ready, release := s.waiting.wait(key)
		// Look again after registering: a put may have landed in between.
		rc, err := st.Get(r.Context(), key)
		if err == nil || !errors.Is(err, errkind.ErrNotFound) {
			release()
			return rc, err
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ready:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			release()
			return nil, err
		}
		t.Stop()
		release()
	}
}
