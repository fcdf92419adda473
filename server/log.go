package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// reqNote collects what a handler learnt about a request (archive, key,
// outcome, error) for the one log line written when it ends.
type reqNote struct {
	mu    sync.Mutex
	attrs []any
}

type noteKey struct{}

// note adds a key/value to the request's log line.
func note(r *http.Request, k string, v any) {
	if n, ok := r.Context().Value(noteKey{}).(*reqNote); ok {
		n.mu.Lock()
		n.attrs = append(n.attrs, k, v)
		n.mu.Unlock()
	}
}

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequests writes one structured line per request: method, archive,
// key, outcome, status, bytes in and out, duration.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		n := &reqNote{}
		r = r.WithContext(context.WithValue(r.Context(), noteKey{}, n))
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		level := slog.LevelInfo
		switch {
		case rec.status >= 500:
			level = slog.LevelError
		case rec.status >= 400 && rec.status != http.StatusNotFound && rec.status != http.StatusConflict:
			level = slog.LevelWarn
		case r.URL.Path == "/healthz" || r.URL.Path == "/metrics":
			level = slog.LevelDebug
		}
		attrs := []any{
			"method", r.Method,
			"status", rec.status,
			"bytes_in", max(r.ContentLength, 0),
			"bytes_out", rec.bytes,
			"duration_ms", float64(time.Since(start).Microseconds()) / 1000,
			"remote", r.RemoteAddr,
		}
		if a := r.PathValue("archive"); a != "" {
			attrs = append(attrs, "archive", a)
		}
		n.mu.Lock()
		attrs = append(attrs, n.attrs...)
		n.mu.Unlock()
		s.log.Log(r.Context(), level, "request", attrs...)
		s.metrics.observe(opOf(r), rec.status, max(r.ContentLength, 0), rec.bytes, time.Since(start))
	})
}
