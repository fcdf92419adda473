package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/wire"
	"github.com/walstore/walstore/wal"
)

// Publish stores a WAL file that walstored itself produced (its WAL
// receiver) through the same door as a client's push: the key's rules,
// the archive's binding and content checks, idempotency, then the
// waiting readers and the metrics.
func (s *Server) Publish(ctx context.Context, archiveName string, n wal.Name, obj *envelope.Object) (archive.Outcome, error) {
	key := archive.Layout{Archive: archiveName}.WAL(n)
	res, err := s.door.PutObject(ctx, key, obj)
	out := res.Outcome
	var ce *archive.ConflictError
	switch {
	case errors.As(err, &ce):
		s.metrics.conflicts.WithLabelValues(archiveName).Inc()
	case err == nil && out != archive.AlreadyStored:
		s.metrics.pushed(archiveName, n, obj.Header.RawSize)
		s.waiting.stored(key)
		s.notifyPeers(key, obj.Header.RawSize)
	case err == nil:
		s.waiting.stored(key)
	}
	return out, err
}

// received answers a GET of a WAL file the store does not have from the
// archive's WAL receiver, if it holds it: a complete segment not stored
// yet, or (for walfetch in archive recovery, which asks with
// Walstore-Partial) the segment being received, zero-padded.
func (s *Server) received(w http.ResponseWriter, r *http.Request, key string) bool {
	k, err := archive.ParseKey(key)
	if err != nil || k.Kind != archive.KindWAL {
		return false
	}
	rc := s.cfg.Receivers[k.Archive]
	if rc == nil {
		return false
	}
	obj, err := rc.Received(k.WAL, r.Header.Get(wire.HeaderPartial) == wire.AcceptPartial)
	if err != nil {
		return false
	}
	note(r, "outcome", "received")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", fmt.Sprint(obj.Size()))
	w.Header().Set(wire.HeaderDigest, obj.Header.Digest.String())
	w.WriteHeader(http.StatusOK)
	io.Copy(w, bytes.NewReader(obj.Bytes()))
	return true
}

var (
	descRecvConnected = prometheus.NewDesc("walstore_receiver_connected", "1 while the archive's WAL receiver streams from a server.", []string{"archive"}, nil)
	descRecvReceived  = prometheus.NewDesc("walstore_receiver_received_lsn_bytes", "WAL position received.", []string{"archive"}, nil)
	descRecvFlushed   = prometheus.NewDesc("walstore_receiver_flushed_lsn_bytes", "WAL position durable on the storage host (reported to the server as flushed).", []string{"archive"}, nil)
	descRecvLagBytes  = prometheus.NewDesc("walstore_receiver_lag_bytes", "Bytes the server has written that the receiver has not flushed.", []string{"archive"}, nil)
	descRecvLastMsg   = prometheus.NewDesc("walstore_receiver_last_message_timestamp_seconds", "When the server last sent something (Unix time).", []string{"archive"}, nil)
	descRecvLagSecs   = prometheus.NewDesc("walstore_receiver_lag_seconds", "The server's clock in its last message against walstored's: how far behind the stream is.", []string{"archive"}, nil)
	descRecvTLI       = prometheus.NewDesc("walstore_receiver_timeline", "Timeline being received.", []string{"archive"}, nil)
	descRecvSlotLost  = prometheus.NewDesc("walstore_receiver_slot_invalidated", "1 when the receiver's replication slot was invalidated: WAL the receiver did not get is gone from the server.", []string{"archive"}, nil)
	descRecvPublished = prometheus.NewDesc("walstore_receiver_segments_total", "Segments the receiver completed, by outcome (stored, already_archived, conflict).", []string{"archive", "outcome"}, nil)
)

// receiverMetrics exports the receivers' state.
type receiverMetrics struct{ s *Server }

func (m receiverMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRecvConnected, descRecvReceived, descRecvFlushed, descRecvLagBytes, descRecvLastMsg, descRecvLagSecs, descRecvTLI, descRecvSlotLost, descRecvPublished} {
		ch <- d
	}
}

func (m receiverMetrics) Collect(ch chan<- prometheus.Metric) {
	for name, rc := range m.s.cfg.Receivers {
		st := rc.Status()
		g := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
		}
		b := func(ok bool) float64 {
			if ok {
				return 1
			}
			return 0
		}
		g(descRecvConnected, b(st.Connected))
		g(descRecvReceived, float64(st.Received))
		g(descRecvFlushed, float64(st.Flushed))
		g(descRecvLagBytes, float64(max(st.ServerEnd, st.Flushed)-st.Flushed))
		g(descRecvTLI, float64(st.Timeline))
		g(descRecvSlotLost, b(st.SlotState == "invalidated"))
		if !st.LastMessage.IsZero() {
			g(descRecvLastMsg, float64(st.LastMessage.UnixNano())/1e9)
			g(descRecvLagSecs, max(0, st.LastMessage.Sub(st.ServerTime).Seconds()))
		}
		for outcome, v := range map[string]int64{"stored": st.Published, "already_archived": st.AlreadyThere, "conflict": st.Conflicts} {
			ch <- prometheus.MustNewConstMetric(descRecvPublished, prometheus.CounterValue, float64(v), name, outcome)
		}
	}
}
