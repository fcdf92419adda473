package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/internal/cli"
	"github.com/walstore/walstore/receiver"
	"github.com/walstore/walstore/server"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// receiveFlags are walstored serve's WAL receiver settings.
type receiveFlags struct {
	sources    []string // ARCHIVE=CONNINFO
	slot       string
	createSlot bool
	dir        string
	appName    string
}

func (f *receiveFlags) bind(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.sources, "receive", nil, "stream an archive's WAL from its cluster: ARCHIVE=CONNINFO (a replication connection; give it again with the same archive for a standby to follow after a promotion)")
	fs.StringVar(&f.slot, "receive-slot", "", "physical replication slot the receiver uses (default walstore_<archive>)")
	fs.BoolVar(&f.createSlot, "receive-create-slot", false, "create the receiver's slot where it does not exist")
	fs.StringVar(&f.dir, "receive-dir", "./walstore-receive", "where the segments being received are kept until they are stored (durable, on the storage host)")
	fs.StringVar(&f.appName, "receive-application-name", "walstored", "application_name the receiver connects with (for synchronous_standby_names), unless its connection string sets one")
}

// receivers makes one receiver per archive named in --receive; srv is
// the server they publish through, set before they run.
func (f *receiveFlags) receivers(st store.Store, log *slog.Logger, srv **server.Server) (map[string]*receiver.Receiver, error) {
	if len(f.sources) == 0 {
		return nil, nil
	}
	byArchive := map[string][]string{}
	var order []string
	for _, s := range f.sources {
		name, conn, ok := strings.Cut(s, "=")
		if !ok || conn == "" {
			return nil, fmt.Errorf("%w: --receive %q: want ARCHIVE=CONNINFO, e.g. billing=\"host=db1 user=walstore_receiver\"", cli.ErrUsage, s)
		}
		if err := archive.ValidArchiveName(name); err != nil {
			return nil, fmt.Errorf("%w: --receive: %v", cli.ErrUsage, err)
		}
		if cfg, err := pgconn.ParseConfig(conn); err == nil && cfg.Password != "" {
			log.Warn("a password in --receive shows in ps to every user of this host: put it in ~/.pgpass of walstored's user (or a passfile= in the connection string) instead", "archive", name)
		}
		if byArchive[name] == nil {
			order = append(order, name)
		}
		byArchive[name] = append(byArchive[name], conn)
	}
	if f.slot != "" && len(order) > 1 {
		return nil, fmt.Errorf("%w: --receive-slot names one slot, and --receive names %d archives: leave it out (each gets walstore_<archive>)", cli.ErrUsage, len(order))
	}
	out := map[string]*receiver.Receiver{}
	for _, name := range order {
		a, err := archive.New(st, name)
		if err != nil {
			return nil, err
		}
		r, err := receiver.New(receiver.Options{
			Archive: a, ConnInfos: byArchive[name], Slot: f.slot, CreateSlot: f.createSlot,
			Dir: f.dir, AppName: f.appName, Log: log,
			Publish: func(ctx context.Context, n wal.Name, obj *envelope.Object) (archive.Outcome, error) {
				return (*srv).Publish(ctx, name, n, obj)
			},
		})
		if err != nil {
			return nil, fmt.Errorf("--receive %s: %w", name, err)
		}
		out[name] = r
	}
	return out, nil
}

// run starts the receivers; wait returns once they stopped (ctx ended).
func runReceivers(ctx context.Context, rs map[string]*receiver.Receiver) (wait func()) {
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() { r.Run(ctx) })
	}
	return wg.Wait
}
