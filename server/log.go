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
	mu       sync.Mutex
	attrs    []any
	code     string
	received int64
	outcome  string
}

type noteKey struct{}

// note adds a key/value to the request's log line.
func note(r *http.Request, k string, v any) {
	n, ok := r.Context().Value(noteKey{}).(*reqNote)
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch k {
	case "code":
		n.code, _ = v.(string)
		return
	case "bytes_received":
		n.received, _ = v.(int64)
		return
	case "outcome":
		n.outcome, _ = v.(string)
	}
	n.attrs = append(n.attrs, k, v)
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
// key, outcome, status, bytes in and out, duration. What a person needs to
// read is at INFO and above: one line per stored object, every refusal
// (WARN) and failure (ERROR). Reads, probes for segments not archived yet
// (a standby at the end of the WAL asks all the time), identical pushes,
// health checks and scrapes are DEBUG: counted in the metrics, not logged.
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
		n.mu.Lock()
		code, received, outcome := n.code, n.received, n.outcome
		attrs := []any{
			"method", r.Method,
			"status", rec.status,
			"bytes_in", received,
			"bytes_out", rec.bytes,
			"duration_ms", float64(time.Since(start).Microseconds()) / 1000,
			"remote", r.RemoteAddr,
		}
		if a := r.PathValue("archive"); a != "" {
			attrs = append(attrs, "archive", a)
		}
		attrs = append(attrs, n.attrs...)
		n.mu.Unlock()
		level := slog.LevelDebug
		switch {
		case outcome == "identical":
			// Already archived: the normal answer to a repeated push (and
			// to walpush after the WAL receiver stored the segment).
		case outcome == "received":
			// A restore read WAL that only the receiver holds: worth a line.
			level = slog.LevelInfo
		case rec.status >= 500 && code != "busy":
			level = slog.LevelError
		case rec.status >= 400 && rec.status != http.StatusNotFound && code != "exists":
			level = slog.LevelWarn
		case r.Method == http.MethodPut && (outcome == "stored" || outcome == "repaired"):
			level = slog.LevelInfo
		case r.Method == http.MethodDelete && rec.status < 300:
			level = slog.LevelInfo
		}
		s.log.Log(r.Context(), level, "request", attrs...)
		storeFailed := rec.status >= 500 && code != "busy" && code != "aborted"
		s.metrics.observe(opOf(r), rec.status, received, rec.bytes, time.Since(start), storeFailed)
	})
}
