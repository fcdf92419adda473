package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Listener settings for Run.
type Listener struct {
	Addr string
	Log  *slog.Logger
	// ShutdownTimeout is how long in-flight requests get to finish after
	// ctx ends (default 30 s).
	ShutdownTimeout time.Duration
	// Ready, if set, is called with the bound address once listening.
	Ready func(addr net.Addr)
	// TLS, when set, serves HTTPS.
	TLS *tls.Config
}

// Run serves h on l.Addr until ctx ends, then shuts down gracefully:
// no new connections, in-flight puts finish (or time out) before return.
func Run(ctx context.Context, l Listener, h http.Handler) error {
	if l.ShutdownTimeout <= 0 {
		l.ShutdownTimeout = 30 * time.Second
	}
	ln, err := net.Listen("tcp", l.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", l.Addr, err)
	}
	if l.TLS != nil {
		ln = tls.NewListener(ln, l.TLS)
	}
	srv := &http.Server{
		Handler: h,
		// Slow or stuck clients cannot hold a connection forever. Bodies
		// are at most one segment; 15 minutes covers 1 GiB at ~1 MiB/s.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       15 * time.Minute,
		WriteTimeout:      15 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(l.Log.Handler(), slog.LevelWarn),
	}
	if l.Ready != nil {
		l.Ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	l.Log.Info("shutting down", "grace", l.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), l.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
