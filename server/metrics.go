package server

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/walstore/walstore/base/wire"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/cachestore"
	"github.com/walstore/walstore/wal"
)

// metrics is walstored's Prometheus instrumentation, on a registry of its
// own (no globals). Store abilities (cache counters, per-store health) are
// found through the store's optional interfaces, whatever wraps them.
type metrics struct {
	reg             *prometheus.Registry
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	bytesIn         *prometheus.CounterVec
	bytesOut        *prometheus.CounterVec
	storeErrs       *prometheus.CounterVec
	conflicts       *prometheus.CounterVec
	badWAL          *prometheus.CounterVec
	backupConflicts *prometheus.CounterVec
	refused         *prometheus.CounterVec
	corrupt         *prometheus.CounterVec
	repaired        *prometheus.CounterVec
	damaged         prometheus.Counter

	peerNotes, peerFailures prometheus.Counter

	mu       sync.Mutex
	archives map[string]*archiveState
}

type archiveState struct {
	newest   wal.Name
	segSize  int64
	lastPush time.Time
}

// statser is the cache's counters (cachestore).
type statser interface{ Stats() cachestore.Stats }

func newMetrics(st store.Store) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walstore_http_requests_total", Help: "Requests by operation and HTTP status.",
		}, []string{"op", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "walstore_http_request_duration_seconds", Help: "Request latency by operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"op"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walstore_http_received_bytes_total", Help: "Request body bytes received, by operation.",
		}, []string{"op"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walstore_http_sent_bytes_total", Help: "Response body bytes sent, by operation.",
		}, []string{"op"}),
		storeErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walstore_store_errors_total", Help: "Requests that failed because the store behind walstored failed.",
		}, []string{"op"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walstore_conflicts_total", Help: "Pushes refused because the name is stored with other content (split brain?).",
		}, []string{"archive"}),
		badWAL: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walstore_wal_refused_total", Help: "Segments refused at the door because PostgreSQL could not replay them to their end (unfinished, recycled, damaged, not WAL).",
		}, []string{"archive"}),
		backupConflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walstore_backup_label_conflicts_total", Help: "Backup history files (.backup) pushed under a name already stored with other content: the newcomer is kept beside the first.",
		}, []string{"archive"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walstore_refused_total", Help: "Requests refused, by reason (invalid, damaged, unauthorized, forbidden, wrong_system, busy, no_space, aborted).",
		}, []string{"reason"}),
		corrupt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walstore_store_corrupt_copies_total", Help: "Corrupt copies found in a store on read (served from another store).",
		}, []string{"store"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "walstore_repaired_objects_total", Help: "Stored copies that failed verification and were replaced by the same content pushed again.",
		}, []string{"archive"}),
		damaged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "walstore_damaged_bodies_total", Help: "Request bodies that failed verification at the door (never stored).",
		}),
		archives: map[string]*archiveState{},
	}
	if rep, ok := store.As[store.Reporter](st); ok {
		for i, h := range rep.Health() {
			name := h.Name
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "walstore_store_up", Help: "Whether the store answered its last request (several stores).", ConstLabels: prometheus.Labels{"store": name},
			}, func() float64 {
				if rep.Health()[i].Up {
					return 1
				}
				return 0
			}))
			m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "walstore_store_owed_objects", Help: "Objects a store is missing after quorum writes, until the next sync.", ConstLabels: prometheus.Labels{"store": name},
			}, func() float64 { return float64(rep.Health()[i].Owed) }))
		}
	}
	m.reg.MustRegister(m.requests, m.duration, m.bytesIn, m.bytesOut, m.storeErrs, m.conflicts, m.badWAL, m.backupConflicts, m.refused, m.corrupt, m.repaired, m.damaged,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), m)
	if cs, ok := store.As[statser](st); ok {
		for _, c := range []struct {
			name, help string
			get        func(cachestore.Stats) float64
		}{
			{"walstore_cache_hits_total", "Reads served from walstored's cache.", func(s cachestore.Stats) float64 { return float64(s.Hits) }},
			{"walstore_cache_misses_total", "Reads that went to the store.", func(s cachestore.Stats) float64 { return float64(s.Misses) }},
			{"walstore_cache_coalesced_total", "Reads that shared another reader's store read.", func(s cachestore.Stats) float64 { return float64(s.Coalesced) }},
		} {
			m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help}, func() float64 { return c.get(cs.Stats()) }))
		}
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "walstore_cache_bytes", Help: "Bytes held in walstored's cache."},
			func() float64 { return float64(cs.Stats().Bytes) }))
	}
	return m
}

var (
	descNewest = prometheus.NewDesc("walstore_archive_newest_segment_end_lsn_bytes",
		"End of the newest segment pushed to the archive through this instance, as a WAL position in bytes.", []string{"archive"}, nil)
	descTLI = prometheus.NewDesc("walstore_archive_newest_timeline",
		"Timeline of the newest segment pushed to the archive through this instance.", []string{"archive"}, nil)
	descLast = prometheus.NewDesc("walstore_archive_last_push_timestamp_seconds",
		"When the archive last received a segment through this instance or one of its --peer instances (Unix time).", []string{"archive"}, nil)
	descSince = prometheus.NewDesc("walstore_archive_seconds_since_last_push",
		"Seconds since the archive last received a segment through this instance or one of its --peer instances.", []string{"archive"}, nil)
)

// Describe and Collect make metrics a collector of the per-archive gauges.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descNewest
	ch <- descTLI
	ch <- descLast
	ch <- descSince
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for name, st := range m.archives {
		end := float64((st.newest.SegNo(st.segSize) + 1) * uint64(st.segSize))
		ch <- prometheus.MustNewConstMetric(descNewest, prometheus.GaugeValue, end, name)
		ch <- prometheus.MustNewConstMetric(descTLI, prometheus.GaugeValue, float64(st.newest.TLI), name)
		ch <- prometheus.MustNewConstMetric(descLast, prometheus.GaugeValue, float64(st.lastPush.UnixNano())/1e9, name)
		ch <- prometheus.MustNewConstMetric(descSince, prometheus.GaugeValue, now.Sub(st.lastPush).Seconds(), name)
	}
}

// pushed records a stored segment. The newest is the one furthest along
// in the WAL (a segment of an old timeline pushed late does not count as
// newest, nor does one of a new timeline that starts behind).
func (m *metrics) pushed(archiveName string, n wal.Name, segSize int64) {
	m.pushedAt(archiveName, n, segSize, time.Now())
}

// pushedAt records a segment stored at a given time (through a peer: the
// time the store gives the object). The last push only moves forward.
func (m *metrics) pushedAt(archiveName string, n wal.Name, segSize int64, at time.Time) {
	if n.Kind != wal.Segment || !wal.ValidSegmentSize(segSize) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.archives[archiveName]
	if st == nil {
		st = &archiveState{}
		m.archives[archiveName] = st
	}
	if at.After(st.lastPush) {
		st.lastPush = at
	}
	if st.segSize == 0 || n.SegNo(segSize) > st.newest.SegNo(segSize) || n.SegNo(segSize) == st.newest.SegNo(segSize) && n.TLI > st.newest.TLI {
		st.newest, st.segSize = n, segSize
	}
}

// lastPushOf is the newest segment pushed to an archive through this
// instance (or a peer) and when the last push came; ok false if none.
func (m *metrics) lastPushOf(archiveName string) (newest wal.Name, segSize int64, at time.Time, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.archives[archiveName]
	if st == nil || st.segSize == 0 {
		return wal.Name{}, 0, time.Time{}, false
	}
	return st.newest, st.segSize, st.lastPush, true
}

// observe records one finished request.
func (m *metrics) observe(op string, status int, in, out int64, d time.Duration, storeFailed bool) {
	m.requests.WithLabelValues(op, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(op).Observe(d.Seconds())
	m.bytesIn.WithLabelValues(op).Add(float64(in))
	m.bytesOut.WithLabelValues(op).Add(float64(out))
	if storeFailed {
		m.storeErrs.WithLabelValues(op).Inc()
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// opOf names a request's operation for metrics, from its route.
func opOf(r *http.Request) string {
	switch {
	case r.URL.Path == "/healthz":
		return "healthz"
	case r.URL.Path == "/metrics":
		return "metrics"
	case r.URL.Path == wire.PathList:
		return "list"
	}
	switch r.Method {
	case http.MethodPut:
		return "put"
	case http.MethodGet:
		return "get"
	case http.MethodHead:
		return "stat"
	case http.MethodDelete:
		return "delete"
	}
	return "other"
}
