// Package server is walstored's HTTP side: it exposes a repository to many
// clients (walpush, walfetch, backups, admin commands) under the protocol
// of base/wire.
//
// Every put passes the door (package server/door: scope, limits, name,
// what the header claims, the body verified in full on its way in, the
// content read as PostgreSQL reads it, then the one idempotency rule)
// before a byte reaches a store; put (objects.go) only decodes the
// request, calls the door and encodes its answer. Behind the door,
// storage semantics (write-once, durability) belong to the store.
//
// What else only a shared front can do lives here too: authentication
// and per-client limits (guard.go), waits for objects not stored yet
// (wait.go), one log line per request (log.go), metrics (metrics.go), the
// catalog scan and the status page (scan.go, status.go), the peers told
// of new WAL (peers.go).
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/wire"
	"github.com/walstore/walstore/receiver"
	"github.com/walstore/walstore/server/auth"
	"github.com/walstore/walstore/server/door"
	"github.com/walstore/walstore/store"
)

// Config holds everything the server needs; main builds it from flags.
type Config struct {
	Store store.Store
	Log   *slog.Logger
	// BufferLimit: objects up to this size are read into memory and
	// verified before they are stored (so a store can retry, and the cache
	// can keep them); larger ones are verified as they stream through.
	// Default 64 MiB.
	BufferLimit int64
	// MemoryLimit caps the bytes of all request bodies held in memory at
	// once; a put that would pass it is answered 503 with Retry-After.
	// Default 512 MiB.
	MemoryLimit int64
	// MinBodyRate is the slowest a client may send a body, in bytes per
	// second, after a 10 s grace (default 256 KiB/s).
	MinBodyRate int64
	// Tokens, when set, is the token file every request must present a
	// token of. Nil disables authentication (walstored serve allows that
	// only on loopback or with --insecure).
	Tokens *Tokens
	// MaxPerClient caps concurrent requests per client (token name, or IP
	// without tokens); default 32.
	MaxPerClient int
	// Passthrough serves the store as tier 1, without the archive's rules
	// (for transport tests of the byte-level checker only).
	Passthrough bool
	// ScanInterval is how often Watch scans every archive's catalog for
	// the metrics of backups and recoverability (default 5 minutes; a
	// backup, drill or retirement written through this server triggers a
	// scan sooner).
	ScanInterval time.Duration
	// LateAfter: an archive without a new segment for this long is "late"
	// in its summary (default 1 hour).
	LateAfter time.Duration
	// Receivers are the WAL receivers by archive: a GET of a segment the
	// store lacks is answered from the receiver when it holds it.
	Receivers map[string]*receiver.Receiver
	// Peers are the other walstored instances in front of the same store
	// (their base URLs): each WAL file stored here is announced to them,
	// to wake their --wait readers at once (peers.go).
	Peers []string
	// PeerToken is the token sent to peers with each notification (a
	// peer-scope line in their token files).
	PeerToken string
}

// Server is an http.Handler serving one repository.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	metrics *metrics
	limits  *limiter
	waiting *waiters
	door    *door.Door
	scan    *scanner
	health  *healthProbe
}

// New returns a server for cfg.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.BufferLimit <= 0 {
		cfg.BufferLimit = 64 << 20
	}
	if cfg.MemoryLimit <= 0 {
		cfg.MemoryLimit = 512 << 20
	}
	if cfg.MemoryLimit < cfg.BufferLimit {
		cfg.BufferLimit = cfg.MemoryLimit
	}
	if cfg.MinBodyRate <= 0 {
		cfg.MinBodyRate = 256 << 10
	}
	if cfg.MaxPerClient <= 0 {
		cfg.MaxPerClient = 32
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = 5 * time.Minute
	}
	if cfg.LateAfter <= 0 {
		cfg.LateAfter = time.Hour
	}
	s := &Server{
		cfg: cfg, log: cfg.Log,
		metrics: newMetrics(cfg.Store),
		limits:  newLimiter(cfg.MaxPerClient),
		waiting: newWaiters(),
		health:  &healthProbe{},
		door:    door.New(door.Config{Store: cfg.Store, MemoryLimit: cfg.MemoryLimit, BufferLimit: cfg.BufferLimit}),
		scan:    newScanner(cfg.Store, cfg.ScanInterval, cfg.LateAfter),
	}
	s.metrics.reg.MustRegister(s.scan)
	s.metrics.peerNotes, s.metrics.peerFailures = newPeerMetrics(s.metrics.reg)
	if len(cfg.Receivers) > 0 {
		s.metrics.reg.MustRegister(receiverMetrics{s})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+wire.PathHealth, s.healthz)
	mux.HandleFunc("GET /{$}", s.statusPage)
	mux.HandleFunc("GET "+wire.PathStatus, s.statusJSON)
	mux.Handle("POST "+wire.PathNotify, s.guardOp(auth.OpNotify, http.HandlerFunc(s.notified)))
	mux.Handle("GET "+wire.PathMetrics, s.guardOp(auth.OpMetrics, s.metrics.handler()))
	mux.Handle("GET "+wire.PathStores, s.guardOp(auth.OpMetrics, http.HandlerFunc(s.stores)))
	mux.HandleFunc("PUT "+wire.PathObjects, s.guard(auth.OpPut, pathArchive, s.put))
	mux.HandleFunc("GET "+wire.PathObjects, s.guard(auth.OpGet, pathArchive, s.get))
	mux.HandleFunc("HEAD "+wire.PathObjects, s.guard(auth.OpStat, pathArchive, s.head))
	mux.HandleFunc("DELETE "+wire.PathObjects, s.guard(auth.OpDelete, pathArchive, s.delete))
	mux.HandleFunc("GET "+wire.PathList, s.guard(auth.OpList, prefixArchive, s.list))
	s.handler = s.logRequests(mux)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Watch scans the repository's catalog until ctx ends (see scanner).
func (s *Server) Watch(ctx context.Context) { s.scan.run(ctx) }

// Rules are the archive rules the server's door asks, for the admin
// operations that change what they remember (a retired timeline).
func (s *Server) Rules() *archive.Rules { return s.door.Rules() }

// stores reports the health of each store behind walstored.
func (s *Server) stores(w http.ResponseWriter, r *http.Request) {
	var h []store.Health
	if rep, ok := store.As[store.Reporter](s.cfg.Store); ok {
		h = rep.Health()
	} else {
		h = []store.Health{{Name: store.Describe(s.cfg.Store), Up: true}}
	}
	writeJSON(w, http.StatusOK, storesFor(s.clientOf(r), s.cfg.Tokens != nil, h))
}

// CorruptCopy is the multistore hook that counts corrupt copies.
func (s *Server) CorruptCopy(storeName, key string, err error) {
	s.metrics.corrupt.WithLabelValues(storeName).Inc()
}

// healthz answers 200 when the store works: it answers and accepts
// writes (a write probe, stored and deleted: a store that lost its write
// quorum still answers reads). A load balancer takes an instance out on
// anything else, and the body says why. One probe serves every health
// check for probeEvery, so that frequent checks cost the store little.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if err := s.health.check(r.Context(), s.cfg.Store); err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte("ok: the store answers and accepts writes\n"))
}

const probeEvery = 5 * time.Second

// healthProbe is the last write probe and what it found.
type healthProbe struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

func (h *healthProbe) check(ctx context.Context, st store.Store) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.at) < probeEvery {
		return h.err
	}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	if c, ok := store.As[store.Cache](st); ok {
		st = c.Uncached()
	}
	err := store.Probe(ctx, st, archive.ProbeKey())
	if err != nil {
		err = fmt.Errorf("write probe: %w", err)
	}
	h.at, h.err = time.Now(), err
	return err
}
