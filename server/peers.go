package server

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/wire"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// Several walstored instances in front of one store tell each other of
// every WAL file they store (--peer), so that a --wait standby reading
// through one is answered the moment a push lands through another,
// instead of when its instance next looks at the store (once a second),
// and so that each instance's last-push metrics count the pushes through
// all of them. A notification proves nothing and needs no token: it wakes
// waiting readers, which then read the store themselves, and it counts as
// a push only once a stat of the store finds the object, at the time the
// store gives it. Still, only a configured peer may send one: with
// tokens, a peer-scope token (--peer-token-file on the sender); an
// instance without --peer answers 404.

var peerClient = &http.Client{Timeout: 2 * time.Second}

// notifyPeers tells the peers that the WAL file key, of rawSize bytes,
// was stored (best effort, in the background).
func (s *Server) notifyPeers(key string, rawSize int64) {
	for _, p := range s.cfg.Peers {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			q := url.Values{"key": {key}, "size": {strconv.FormatInt(rawSize, 10)}}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, p+wire.PathNotify+"?"+q.Encode(), nil)
			if err != nil {
				return
			}
			if s.cfg.PeerToken != "" {
				req.Header.Set("Authorization", "Bearer "+s.cfg.PeerToken)
			}
			resp, err := peerClient.Do(req)
			if err != nil {
				s.metrics.peerFailures.Inc()
				return
			}
			resp.Body.Close()
		}()
	}
}

// notified is POST /v1/notify?key=K&size=N from a peer: wake the readers
// waiting for K, and count it as a push once the store has it.
func (s *Server) notified(w http.ResponseWriter, r *http.Request) {
	if len(s.cfg.Peers) == 0 {
		s.failStatus(w, r, http.StatusNotFound, "not_found", "this walstored has no peer (--peer): it takes no notification")
		return
	}
	key := r.URL.Query().Get("key")
	k, err := archive.ParseKey(key)
	if err != nil || k.Kind != archive.KindWAL {
		s.failStatus(w, r, http.StatusBadRequest, "invalid", "a notification names a WAL file's key")
		return
	}
	size, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
	note(r, "key", key)
	s.metrics.peerNotes.Inc()
	s.waiting.stored(key)
	if k.WAL.Kind == wal.Segment && wal.ValidSegmentSize(size) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st := s.cfg.Store
			if c, ok := store.As[store.Cache](st); ok {
				st = c.Uncached()
			}
			if info, err := st.Stat(ctx, key); err == nil {
				s.metrics.pushedAt(k.Archive, k.WAL, size, info.ModTime)
			}
		}()
	}
	w.WriteHeader(http.StatusNoContent)
}

func newPeerMetrics(reg *prometheus.Registry) (notes, failures prometheus.Counter) {
	notes = prometheus.NewCounter(prometheus.CounterOpts{Name: "walstore_peer_notifications_total", Help: "Notifications from peer walstored instances of WAL they stored."})
	failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "walstore_peer_notify_failures_total", Help: "Notifications this instance could not deliver to a peer."})
	reg.MustRegister(notes, failures)
	return notes, failures
}
