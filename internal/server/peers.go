package server

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walstore/walstore/archive"
)

// Several walstored instances in front of one store tell each other of
// every WAL file they store (--peer), so that a --wait standby reading
// through one is answered the moment a push lands through another,
// instead of when its instance next looks at the store (once a second).
// A notification only wakes waiting readers, which then read the store
// themselves: it proves nothing and needs no token, and a forged one
// costs a store read per waiting request, nothing more.

var peerClient = &http.Client{Timeout: 2 * time.Second}

// notifyPeers tells the peers that key was stored (best effort, in the
// background).
func (s *Server) notifyPeers(key string) {
	for _, p := range s.cfg.Peers {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, p+"/v1/notify?key="+url.QueryEscape(key), nil)
			if err != nil {
				return
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

// notified is POST /v1/notify?key=K from a peer: wake the readers
// waiting for K.
func (s *Server) notified(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	k, err := archive.ParseKey(key)
	if err != nil || k.Kind != archive.KindWAL {
		s.failStatus(w, r, http.StatusBadRequest, "invalid", "a notification names a WAL file's key")
		return
	}
	note(r, "key", key)
	s.metrics.peerNotes.Inc()
	s.waiting.stored(key)
	w.WriteHeader(http.StatusNoContent)
}

func newPeerMetrics(reg *prometheus.Registry) (notes, failures prometheus.Counter) {
	notes = prometheus.NewCounter(prometheus.CounterOpts{Name: "walstore_peer_notifications_total", Help: "Notifications from peer walstored instances of WAL they stored."})
	failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "walstore_peer_notify_failures_total", Help: "Notifications this instance could not deliver to a peer."})
	reg.MustRegister(notes, failures)
	return notes, failures
}
