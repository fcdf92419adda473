package server

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walstore/walstore/server/auth"
	"github.com/walstore/walstore/server/door"
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

// authenticate returns the request's client: nil without tokens; false
// (after answering 401) when the request has no valid token.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*auth.Client, bool) {
	if s.cfg.Tokens == nil {
		return nil, true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	c, found := s.cfg.Tokens.set.Load().Authenticate(strings.TrimSpace(tok))
	if !ok || !found {
		w.Header().Set("WWW-Authenticate", `Bearer realm="walstored"`)
		msg := "no token was given: give the client's token with --token-file or WALSTORE_TOKEN"
		if ok && strings.TrimSpace(tok) != "" {
			msg = "the token given is not one of this walstored's (a typo, another walstored's token, or one removed from its token file)"
		}
		s.failStatus(w, r, http.StatusUnauthorized, "unauthorized", msg)
		return nil, false
	}
	note(r, "client", c.Name)
	return c, true
}

// guard wraps a handler with authentication, authorization for op on the
// request's archive, and the per-client concurrency cap. A put of anything
// but a WAL file needs admin.
func (s *Server) guard(op auth.Op, archiveOf func(*http.Request) string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who := clientIP(r)
		c, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if c != nil {
			who = c.Name
			if msg := door.Refusal(c, op, archiveOf(r), r.PathValue("path")); msg != "" {
				s.failStatus(w, r, http.StatusForbidden, "forbidden", msg)
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

// guardOp wraps a handler that spans archives (metrics, store health):
// with tokens, the client's scope must allow op.
func (s *Server) guardOp(op auth.Op, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if c != nil && !c.Allows(op, "") {
			s.failStatus(w, r, http.StatusForbidden, "forbidden", "client "+c.Name+" (scope "+c.Scope.String()+") may not "+string(op)+": that needs scope metrics or admin")
			return
		}
		h.ServeHTTP(w, r)
	})
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
// misconfigured prefetch, a retry storm) cannot take every connection. A
// client's entry lives only while it has requests in flight.
type limiter struct {
	max int
	mu  sync.Mutex
	sem map[string]*slot
}

type slot struct {
	ch    chan struct{}
	users int
}

func newLimiter(max int) *limiter { return &limiter{max: max, sem: map[string]*slot{}} }

func (l *limiter) acquire(who string, wait time.Duration) (func(), bool) {
	l.mu.Lock()
	sl := l.sem[who]
	if sl == nil {
		sl = &slot{ch: make(chan struct{}, l.max)}
		l.sem[who] = sl
	}
	sl.users++
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		sl.users--
		if sl.users == 0 {
			delete(l.sem, who)
		}
		l.mu.Unlock()
	}
	select {
	case sl.ch <- struct{}{}:
		return func() { <-sl.ch; done() }, true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case sl.ch <- struct{}{}:
		return func() { <-sl.ch; done() }, true
	case <-t.C:
		done()
		return nil, false
	}
}

// entries is how many clients the limiter tracks (tests).
func (l *limiter) entries() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sem)
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
