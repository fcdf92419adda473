package server

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walstore/walstore/server/auth"
)

// Tokens holds the current token set; Reload swaps it atomically (SIGHUP),
// so requests in flight finish with the set they started with.
type Tokens struct {
	path string
	set  atomic.Pointer[auth.Set]
}

// LoadTokens reads the token file at path.
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	return t, t.Reload()
}

// Reload re-reads the token file; on error the old set stays in force.
func (t *Tokens) Reload() error {
	s, err := auth.Load(t.path)
	if err != nil {
		return err
	}
	t.set.Store(s)
	return nil
}

// Len is the number of clients in force.
func (t *Tokens) Len() int { return t.set.Load().Len() }

// guard wraps a handler with authentication, authorization for op on the
// request's archive, and the per-client concurrency cap.
func (s *Server) guard(op auth.Op, archiveOf func(*http.Request) string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who := clientIP(r)
		if s.cfg.Tokens != nil {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			c, found := s.cfg.Tokens.set.Load().Authenticate(strings.TrimSpace(tok))
			if !ok || !found {
				w.Header().Set("WWW-Authenticate", `Bearer realm="walstored"`)
				s.failStatus(w, r, http.StatusUnauthorized, "unauthorized", "no valid token: give the client's token with --token-file or WALSTORE_TOKEN")
				return
			}
			who = c.Name
			note(r, "client", c.Name)
			a := archiveOf(r)
			if !c.Allows(op, a) {
				what := "archive " + a
				if a == "" {
					what = "every archive"
				}
				s.failStatus(w, r, http.StatusForbidden, "forbidden", "client "+c.Name+" (scope "+c.Scope.String()+") may not "+string(op)+" in "+what)
				return
			}
		}
		release, ok := s.limits.acquire(who, 5*time.Second)
		if !ok {
			s.failStatus(w, r, http.StatusTooManyRequests, "busy", "client "+who+" has too many requests in flight; retry")
			return
		}
		defer release()
		h(w, r)
	}
}

func pathArchive(r *http.Request) string { return r.PathValue("archive") }

// prefixArchive is the archive a list prefix stays inside, "" if it spans
// archives.
func prefixArchive(r *http.Request) string {
	p := r.URL.Query().Get("prefix")
	if a, _, ok := strings.Cut(p, "/"); ok {
		return a
	}
	return ""
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limiter caps concurrent requests per client, so one runaway client (a
// misconfigured prefetch, a retry storm) cannot take every connection.
type limiter struct {
	max int
	mu  sync.Mutex
	sem map[string]chan struct{}
}

func (l *limiter) acquire(who string, wait time.Duration) (func(), bool) {
	l.mu.Lock()
	ch := l.sem[who]
	if ch == nil {
		ch = make(chan struct{}, l.max)
		l.sem[who] = ch
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, true
	case <-t.C:
		return nil, false
	}
}

// Loopback reports whether a listen address only accepts local clients.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
