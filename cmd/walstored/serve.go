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

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/units"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/server"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/cachestore"
	"github.com/walstore/walstore/store/storeurl"
)

// DefaultStore is the embedded default: a directory next to the daemon.
const DefaultStore = "file://./walstore-data"

func bindServe(fs *pflag.FlagSet, e env) func(context.Context) error {
	var stores []string
	fs.StringArrayVar(&stores, "store", nil, "store to serve: file:///dir or s3://bucket/prefix?endpoint=host:port (default "+DefaultStore+"); give it again to keep several stores in step")
	var configFile string
	fs.StringVar(&configFile, "config", "", "config file of key = value lines (env WALSTORE_CONFIG)")
	quorum := fs.Int("quorum", 0, "with several stores: accept a push once this many have it and repair the rest later (default: all of them)")
	syncEvery := fs.Duration("sync-interval", 10*time.Minute, "with several stores: how often to copy what a store is missing (0: never)")
	listen := fs.String("listen", "127.0.0.1:7480", "address to listen on")
	tokens := fs.String("tokens", "", "token file: one client per line with its scope, archives and token SHA-256 (walstored token makes lines)")
	insecure := fs.Bool("insecure", false, "allow a non-loopback listen without --tokens (anyone who can connect can read and delete)")
	tlsCert := fs.String("tls-cert", "", "TLS certificate (PEM); with --tls-key, serve HTTPS")
	tlsKey := fs.String("tls-key", "", "TLS private key (PEM)")
	tlsClientCA := fs.String("tls-client-ca", "", "require client certificates signed by this CA (PEM)")
	maxPerClient := fs.Int("max-per-client", 32, "concurrent requests allowed per client")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	cacheSize := fs.String("cache-size", "256MiB", "memory for recently pushed and fetched objects, backup packs excepted (0 disables the cache)")
	memoryLimit := fs.String("memory-limit", "512MiB", "memory for request bodies held at once; past it, pushes are told to retry (503)")
	bufferLimit := fs.String("buffer-limit", "64MiB", "objects up to this size are held in memory and verified before they are stored; larger ones are verified as they stream through")
	minRate := fs.String("min-body-rate", "256KiB", "the slowest a client may send a body, per second (after 10 s)")
	scanEvery := fs.Duration("scan-interval", 5*time.Minute, "how often to scan every archive's backups and WAL for the metrics of backup age and recoverability")
	lateAfter := fs.Duration("late-after", time.Hour, "an archive without a new segment for this long is reported late")
	var recv receiveFlags
	recv.bind(fs)
	var peers []string
	fs.StringArrayVar(&peers, "peer", nil, "another walstored in front of the same store (http://host:port): told of every WAL file stored here, so that its --wait readers are answered at once; give it once per peer")
	peerToken := fs.String("peer-token-file", "", "file holding the token sent with notifications to the peers (a peer-scope line in their token files)")
	return func(ctx context.Context) error {
		f := serveFlags{stores, *quorum, *syncEvery, *listen, *tokens, *insecure, *tlsCert, *tlsKey, *tlsClientCA, *maxPerClient, *logFormat, *logLevel, *cacheSize, *memoryLimit, *bufferLimit, *minRate, *scanEvery, *lateAfter, recv, peers, ""}
		if *peerToken != "" {
			b, err := os.ReadFile(*peerToken)
			if err != nil || strings.TrimSpace(string(b)) == "" {
				return fmt.Errorf("%w: --peer-token-file %s: %v", errkind.ErrConfig, *peerToken, err)
			}
			f.peerToken = strings.TrimSpace(string(b))
		}
		return serve(ctx, e, f)
	}
}

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
	peerToken                                                         string
}

func serve(ctx context.Context, e env, f serveFlags) error {
	stores, quorum, syncEvery, listen, tokens, insecure := f.stores, &f.quorum, &f.syncEvery, &f.listen, &f.tokens, &f.insecure
	tlsCert, tlsKey, tlsClientCA, maxPerClient, logFormat, logLevel, cacheSize := &f.tlsCert, &f.tlsKey, &f.tlsClientCA, &f.maxPerClient, &f.logFormat, &f.logLevel, &f.cacheSize
	getenv, stderr := e.getenv, e.stderr
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level %q", cli.ErrUsage, *logLevel)
	}
	if *logFormat != "text" && *logFormat != "json" {
		return fmt.Errorf("%w: --log-format %q: want text or json", cli.ErrUsage, *logFormat)
	}
	cacheBytes, err := units.ParseSize(*cacheSize)
	if err != nil {
		return fmt.Errorf("%w: --cache-size: %v", cli.ErrUsage, err)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", cli.ErrUsage)
	}
	if *tlsClientCA != "" && *tlsCert == "" {
		return fmt.Errorf("%w: --tls-client-ca needs --tls-cert and --tls-key", cli.ErrUsage)
	}
	if *tokens == "" && !*insecure && !server.Loopback(*listen) {
		return fmt.Errorf("%w: refusing to listen on %s without --tokens: anyone who can connect could read, overwrite-check and delete every archive; give --tokens FILE, or --insecure on a network you trust", cli.ErrUsage, *listen)
	}
	var sizes [3]int64
	for i, v := range []struct{ flag, val string }{{"memory-limit", f.memoryLimit}, {"buffer-limit", f.bufferLimit}, {"min-body-rate", f.minRate}} {
		n, err := units.ParseSize(v.val)
		if err != nil || n <= 0 {
			return fmt.Errorf("%w: --%s %q: want a size like 512MiB", cli.ErrUsage, v.flag, v.val)
		}
		sizes[i] = n
	}
	log := cli.ServerLogger(stderr, *logFormat, level)
	cfg := server.Config{Log: log, MaxPerClient: *maxPerClient, MemoryLimit: sizes[0], BufferLimit: sizes[1], MinBodyRate: sizes[2]}
	setMemoryLimit(e, log, sizes[0], cacheBytes)
	if *tokens != "" {
		if cfg.Tokens, err = server.LoadTokens(*tokens); err != nil {
			return fmt.Errorf("%w: --tokens: %v", cli.ErrUsage, err)
		}
	}
	var tlsFiles *server.TLSFiles
	listener := server.Listener{Addr: *listen, Log: log}
	if *tlsCert != "" {
		if tlsFiles, err = server.NewTLS(*tlsCert, *tlsKey, *tlsClientCA); err != nil {
			return fmt.Errorf("%w: %v", cli.ErrUsage, err)
		}
		if listener.TLS, err = tlsFiles.Config(); err != nil {
			return fmt.Errorf("%w: %v", cli.ErrUsage, err)
		}
	}
	var srv *server.Server
	st, multi, err := openStores(ctx, getenv, stores, *quorum, log, func(st, key string, err error) {
		if srv != nil {
			srv.CorruptCopy(st, key, err)
		}
	})
	if err != nil {
		return err
	}
	if cacheBytes > 0 {
		st = cachestore.New(st, cachestore.Options{MaxBytes: cacheBytes, Admit: func(key string) bool { return !archive.IsPack(key) }})
	}
	cfg.Store = st
	go reloadOnHUP(ctx, log, cfg.Tokens, tlsFiles)
	if multi != nil && *syncEvery > 0 {
		go func() {
			if rep, err := leasedSync(ctx, multi, "", *syncEvery); err == nil {
				logSync(log, rep)
			} else {
				log.Warn("store sync at start failed", "error", err.Error())
			}
			syncLoop(ctx, multi, *syncEvery, log)
		}()
	}
	repo := store.Describe(st)
	listener.Ready = func(a net.Addr) {
		clients := 0
		if cfg.Tokens != nil {
			clients = cfg.Tokens.Len()
		}
		log.Info("walstored listening", "addr", a.String(), "store", repo, "tls", listener.TLS != nil, "token_clients", clients, "auth", cfg.Tokens != nil)
	}
	if f.scanEvery <= 0 || f.lateAfter <= 0 {
		return fmt.Errorf("%w: --scan-interval and --late-after must be positive", cli.ErrUsage)
	}
	cfg.ScanInterval, cfg.LateAfter = f.scanEvery, f.lateAfter
	for _, p := range f.peers {
		if err := storeurl.Check(p); err != nil || !storeurl.Served(p) || strings.Contains(p, ",") {
			return fmt.Errorf("%w: --peer %q: want the URL of one walstored (http://host:port)", cli.ErrUsage, p)
		}
		cfg.Peers = append(cfg.Peers, strings.TrimSuffix(p, "/"))
	}
	cfg.PeerToken = f.peerToken
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
