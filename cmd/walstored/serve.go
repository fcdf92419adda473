package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/units"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/server"
	"github.com/walstore/walstore/server/stores"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/storeurl"
)

// DefaultStore is the embedded default: a directory next to the daemon.
const DefaultStore = "file://./walstore-data"

// serveFlags are walstored serve's flags, bound in place.
type serveFlags struct {
	stores                                                            []string
	quorum                                                            int
	syncEvery                                                         time.Duration
	listen, tokens                                                    string
	insecure                                                          bool
	tlsCert, tlsKey, tlsClientCA                                      string
	maxPerClient                                                      int
	logFormat, logLevel, cacheSize, memoryLimit, bufferLimit, minRate string
	scanEvery, lateAfter                                              time.Duration
	receive                                                           receiveFlags
	peers                                                             []string
	peerTokenFile                                                     string
}

func bindServe(fs *pflag.FlagSet, e env) func(context.Context) error {
	f := &serveFlags{}
	fs.StringArrayVar(&f.stores, "store", nil, "store to serve: file:///dir or s3://bucket/prefix?endpoint=host:port (default "+DefaultStore+"); give it again to keep several stores in step")
	fs.String("config", "", "config file of key = value lines (env WALSTORE_CONFIG)")
	fs.IntVar(&f.quorum, "quorum", 0, "with several stores: accept a push once this many have it and repair the rest later (default: all of them)")
	fs.DurationVar(&f.syncEvery, "sync-interval", 10*time.Minute, "with several stores: how often to copy what a store is missing (0: never)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:7480", "address to listen on")
	fs.StringVar(&f.tokens, "tokens", "", "token file: one client per line with its scope, archives and token SHA-256 (walstored token makes lines)")
	fs.BoolVar(&f.insecure, "insecure", false, "allow a non-loopback listen without --tokens (anyone who can connect can read and delete)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate (PEM); with --tls-key, serve HTTPS")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key (PEM)")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca", "", "require client certificates signed by this CA (PEM)")
	fs.IntVar(&f.maxPerClient, "max-per-client", 32, "concurrent requests allowed per client")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.cacheSize, "cache-size", "256MiB", "memory for recently pushed and fetched objects, backup packs excepted (0 disables the cache)")
	fs.StringVar(&f.memoryLimit, "memory-limit", "512MiB", "memory for request bodies held at once; past it, pushes are told to retry (503)")
	fs.StringVar(&f.bufferLimit, "buffer-limit", "64MiB", "objects up to this size are held in memory and verified before they are stored; larger ones are verified as they stream through")
	fs.StringVar(&f.minRate, "min-body-rate", "256KiB", "the slowest a client may send a body, per second (after 10 s)")
	fs.DurationVar(&f.scanEvery, "scan-interval", 5*time.Minute, "how often to scan every archive's backups and WAL for the metrics of backup age and recoverability")
	fs.DurationVar(&f.lateAfter, "late-after", time.Hour, "an archive without a new segment for this long is reported late")
	f.receive.bind(fs)
	fs.StringArrayVar(&f.peers, "peer", nil, "another walstored in front of the same store (http://host:port): told of every WAL file stored here, so that its --wait readers are answered at once; give it once per peer")
	fs.StringVar(&f.peerTokenFile, "peer-token-file", "", "file holding the token sent with notifications to the peers (a peer-scope line in their token files)")
	return func(ctx context.Context) error { return serve(ctx, e, f) }
}

// serve checks the flags, builds the server's configuration and runs it.
func serve(ctx context.Context, e env, f *serveFlags) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level %q", cli.ErrUsage, f.logLevel)
	}
	if f.logFormat != "text" && f.logFormat != "json" {
		return fmt.Errorf("%w: --log-format %q: want text or json", cli.ErrUsage, f.logFormat)
	}
	cacheBytes, err := units.ParseSize(f.cacheSize)
	if err != nil {
		return fmt.Errorf("%w: --cache-size: %v", cli.ErrUsage, err)
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", cli.ErrUsage)
	}
	if f.tlsClientCA != "" && f.tlsCert == "" {
		return fmt.Errorf("%w: --tls-client-ca needs --tls-cert and --tls-key", cli.ErrUsage)
	}
	if f.tokens == "" && !f.insecure && !server.Loopback(f.listen) {
		return fmt.Errorf("%w: refusing to listen on %s without --tokens: anyone who can connect could read, overwrite-check and delete every archive; give --tokens FILE, or --insecure on a network you trust", cli.ErrUsage, f.listen)
	}
	if f.scanEvery <= 0 || f.lateAfter <= 0 {
		return fmt.Errorf("%w: --scan-interval and --late-after must be positive", cli.ErrUsage)
	}
	var sizes [3]int64
	for i, v := range []struct{ flag, val string }{{"memory-limit", f.memoryLimit}, {"buffer-limit", f.bufferLimit}, {"min-body-rate", f.minRate}} {
		n, err := units.ParseSize(v.val)
		if err != nil || n <= 0 {
			return fmt.Errorf("%w: --%s %q: want a size like 512MiB", cli.ErrUsage, v.flag, v.val)
		}
		sizes[i] = n
	}
	log := cli.ServerLogger(e.stderr, f.logFormat, level)
	cfg := server.Config{Log: log, MaxPerClient: f.maxPerClient, MemoryLimit: sizes[0], BufferLimit: sizes[1], MinBodyRate: sizes[2],
		ScanInterval: f.scanEvery, LateAfter: f.lateAfter}
	setMemoryLimit(e, log, sizes[0], cacheBytes)
	if f.tokens != "" {
		if cfg.Tokens, err = server.LoadTokens(f.tokens); err != nil {
			return fmt.Errorf("%w: --tokens: %v", cli.ErrUsage, err)
		}
	}
	for _, p := range f.peers {
		if err := storeurl.Check(p); err != nil || !storeurl.Served(p) || strings.Contains(p, ",") {
			return fmt.Errorf("%w: --peer %q: want the URL of one walstored (http://host:port)", cli.ErrUsage, p)
		}
		cfg.Peers = append(cfg.Peers, strings.TrimSuffix(p, "/"))
	}
	if f.peerTokenFile != "" {
		b, err := os.ReadFile(f.peerTokenFile)
		if err != nil || strings.TrimSpace(string(b)) == "" {
			return fmt.Errorf("%w: --peer-token-file %s: %v", errkind.ErrConfig, f.peerTokenFile, err)
		}
		cfg.PeerToken = strings.TrimSpace(string(b))
	}
	var tlsFiles *server.TLSFiles
	listener := server.Listener{Addr: f.listen, Log: log}
	if f.tlsCert != "" {
		if tlsFiles, err = server.NewTLS(f.tlsCert, f.tlsKey, f.tlsClientCA); err != nil {
			return fmt.Errorf("%w: %v", cli.ErrUsage, err)
		}
		if listener.TLS, err = tlsFiles.Config(); err != nil {
			return fmt.Errorf("%w: %v", cli.ErrUsage, err)
		}
	}
	var srv *server.Server
	st, multi, err := openStores(ctx, e.getenv, f.stores, f.quorum, cacheBytes, log, func(st, key string, err error) {
		if srv != nil {
			srv.CorruptCopy(st, key, err)
		}
	})
	if err != nil {
		return err
	}
	cfg.Store = st
	go reloadOnHUP(ctx, log, cfg.Tokens, tlsFiles)
	if multi != nil && f.syncEvery > 0 {
		go stores.SyncLoop(ctx, multi, f.syncEvery, log)
	}
	repo := store.Describe(st)
	listener.Ready = func(a net.Addr) {
		clients := 0
		if cfg.Tokens != nil {
			clients = cfg.Tokens.Len()
		}
		log.Info("walstored listening", "addr", a.String(), "store", repo, "tls", listener.TLS != nil, "token_clients", clients, "auth", cfg.Tokens != nil)
	}
	if cfg.Receivers, err = f.receive.receivers(st, log, &srv); err != nil {
		return err
	}
	srv = server.New(cfg)
	if !cfg.Passthrough {
		go srv.Watch(ctx)
	}
	wait := runReceivers(ctx, cfg.Receivers)
	defer wait()
	return server.Run(ctx, listener, srv)
}

// reloadOnHUP re-reads the token file and the TLS certificate on SIGHUP;
// a file that fails to load leaves the old one in force.
func reloadOnHUP(ctx context.Context, log *slog.Logger, tokens *server.Tokens, tlsFiles *server.TLSFiles) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if tokens != nil {
			if err := tokens.Reload(); err != nil {
				log.Error("token file not reloaded; the old one stays in force", "error", err.Error())
			} else {
				log.Info("token file reloaded", "clients", tokens.Len())
			}
		}
		if tlsFiles != nil {
			if err := tlsFiles.Reload(); err != nil {
				log.Error("TLS certificate not reloaded; the old one stays in force", "error", err.Error())
			} else {
				log.Info("TLS certificate reloaded")
			}
		}
	}
}

// MemoryMargin is what walstored holds besides its budget (request bodies
// and stream decoders, --memory-limit) and its cache (--cache-size): the
// decode buffers kept per core (64 MiB each at most) and the runtime.
func memoryMargin() int64 { return int64(runtime.GOMAXPROCS(0))*64<<20 + 128<<20 }

// setMemoryLimit tells the garbage collector the bound walstored keeps
// to (--memory-limit + --cache-size + memoryMargin), so that garbage left
// by bodies is collected before resident memory passes it, rather than
// when the heap has doubled. GOMEMLIMIT, when set, wins.
func setMemoryLimit(e env, log *slog.Logger, budget, cache int64) {
	if e.getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := budget + cache + memoryMargin()
	debug.SetMemoryLimit(limit)
	log.Debug("memory bound", "bytes", limit)
}
