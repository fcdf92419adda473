// Package server is walstored's HTTP side: it exposes an archive.Store to
// many clients (walpush, walfetch, backups, admin commands) under the
// protocol defined in package httpstore.
//
// The server is thin on purpose: storage semantics (write-once, durability)
// belong to the store behind it and idempotency to archive.PutEnvelope. What
// it adds is what only a shared front can do: checking every object and
// name at the edge before it reaches the store, binding each archive to one
// PostgreSQL system, and one place for logs, limits, auth and metrics.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/multistore"
	"github.com/walstore/walstore/server/auth"
)

// Config holds everything the server needs; main builds it from flags.
type Config struct {
	Store archive.Store
	Log   *slog.Logger
	// BufferLimit: objects up to this size are read fully into memory
	// before they are stored, so that a store can retry its upload.
	// Default 64 MiB; larger objects are streamed.
	BufferLimit int64
	// Tokens, when set, is the token file every request must present a
	// token of. Nil disables authentication (walstored serve allows that
	// only on loopback or with --insecure).
	Tokens *Tokens
	// MaxPerClient caps concurrent requests per client (token name, or IP
	// without tokens); default 32.
	MaxPerClient int
	// Stores, when walstored fronts several stores, reports their health
	// (GET /v1/stores and metrics).
	Stores *multistore.Store
}

// Server is an http.Handler serving one store.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	metrics *metrics
	limits  *limiter
	waiting *waiters

	mu       sync.Mutex
	archives map[string]*archive.Archive
}

// New returns a server for cfg.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.BufferLimit <= 0 {
		cfg.BufferLimit = 64 << 20
	}
	if cfg.MaxPerClient <= 0 {
		cfg.MaxPerClient = 32
	}
	s := &Server{
		cfg: cfg, log: cfg.Log, archives: map[string]*archive.Archive{},
		metrics: newMetrics(cfg.Store, cfg.Stores),
		limits:  &limiter{max: cfg.MaxPerClient, sem: map[string]chan struct{}{}},
		waiting: &waiters{ch: map[string]chan struct{}{}},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("GET /v1/stores", s.stores)
	mux.HandleFunc("PUT /v1/archives/{archive}/objects/{path...}", s.guard(auth.OpPut, pathArchive, s.put))
	mux.HandleFunc("GET /v1/archives/{archive}/objects/{path...}", s.guard(auth.OpGet, pathArchive, s.get))
	mux.HandleFunc("HEAD /v1/archives/{archive}/objects/{path...}", s.guard(auth.OpStat, pathArchive, s.head))
	mux.HandleFunc("DELETE /v1/archives/{archive}/objects/{path...}", s.guard(auth.OpDelete, pathArchive, s.delete))
	mux.HandleFunc("GET /v1/list", s.guard(auth.OpList, prefixArchive, s.list))
	s.handler = s.logRequests(mux)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// archive returns the (cached) archive handle, which remembers its system
// binding once read.
func (s *Server) archive(name string) (*archive.Archive, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.archives[name]; ok {
		return a, nil
	}
	a, err := archive.New(s.cfg.Store, name)
	if err != nil {
		return nil, err
	}
	s.archives[name] = a
	return a, nil
}

// stores reports the health of each store behind walstored.
func (s *Server) stores(w http.ResponseWriter, r *http.Request) {
	var h []multistore.Health
	if s.cfg.Stores != nil {
		h = s.cfg.Stores.Health()
	} else {
		h = []multistore.Health{{Name: archive.Describe(s.cfg.Store), Up: true}}
	}
	writeJSON(w, http.StatusOK, h)
}

// CorruptCopy is the multistore hook that counts corrupt copies.
func (s *Server) CorruptCopy(store, key string, err error) {
	s.metrics.corrupt.WithLabelValues(store).Inc()
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	// A stat of a key that never exists proves the store answers; with
	// several stores, enough of them to accept a push.
	if s.cfg.Stores != nil {
		if err := s.cfg.Stores.Healthy(ctx); err != nil {
			s.fail(w, r, err)
			return
		}
	} else if _, err := s.cfg.Store.Stat(ctx, "healthz/meta/probe"); err != nil && !isNotFound(err) {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte("ok\n"))
}
