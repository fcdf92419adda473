package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/client/agent"
	"github.com/walstore/walstore/client/push"
	"github.com/walstore/walstore/client/worker"
	"github.com/walstore/walstore/internal/cli"
)

const agentSynopsis = "walpush agent --pgdata DIR [--agent-socket PATH] [flags]"

// bindAgent adds the agent's own flags.
func bindAgent(fs *pflag.FlagSet, pgdata, socket *string) {
	fs.StringVar(pgdata, "pgdata", "", "the cluster's data directory: only its pg_wal is archived (env WALSTORE_PGDATA)")
	fs.StringVar(socket, "agent-socket", agent.DefaultSocket, "Unix socket to listen on; PostgreSQL's walstore.agent_socket names the same (env WALSTORE_AGENT_SOCKET)")
}

// runAgent is "walpush agent": it serves archive_library = 'walstore' for
// one cluster until SIGTERM. Every walpush flag applies to every push.
func runAgent(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("walpush agent", pflag.ContinueOnError)
	c := cli.Common{Getenv: getenv, FailFast: true}
	var cfg push.Config
	bind(fs, &c, &cfg)
	var pgdata, socket string
	bindAgent(fs, &pgdata, &socket)
	err := cli.Parse(fs, args, getenv, "walpush", pushFlags(getenv))
	if errors.Is(err, pflag.ErrHelp) {
		cli.Usage(stdout, agentSynopsis, fs)
		return cli.ExitOK
	}
	if err == nil && fs.NArg() != 0 {
		err = fmt.Errorf("%w: the agent takes no arguments (PostgreSQL's archive module names each file), got %q", cli.ErrUsage, fs.Args())
	}
	if err == nil && pgdata == "" {
		err = fmt.Errorf("%w: --pgdata is required: the agent archives one cluster's pg_wal", cli.ErrUsage)
	}
	if err == nil {
		err = c.Check()
	}
	if err == nil && (cfg.Timeout <= 0 || cfg.Jobs < 1 || cfg.Jobs > 64) {
		err = fmt.Errorf("%w: --timeout must be positive and --jobs 1 to 64", cli.ErrUsage)
	}
	if err != nil {
		fmt.Fprintf(stderr, "walpush agent: %s\n", cli.OneLine(err))
		return cli.ExitUsage
	}
	level := slog.LevelInfo
	if c.Verbose {
		level = slog.LevelDebug
	}
	log := cli.ServerLogger(stderr, "text", level)
	c.Cache = cli.OpenCache(worker.StateDir(pgdata))
	cfg.Open = c.Opener()
	cfg.Repo, _ = c.RepoURL()
	cfg.ArchiveName = c.Archive
	cfg.Log = log
	cfg.Resident = true
	keys, err := c.Keyring()
	if err != nil {
		fmt.Fprintf(stderr, "walpush agent: %s\n", cli.OneLine(err))
		return cli.ExitCode(err)
	}
	if keys != nil {
		cfg.Key = keys.Encrypt
	}
	// The push-ahead pusher runs in this process: it exits when the
	// backlog is done, and the next request starts it again.
	pusher := cfg
	cfg.Spawn = func(walDir string) error {
		go push.RunPusher(ctx, pusher, walDir)
		return nil
	}
	a, err := agent.New(agent.Config{Push: cfg, PGData: pgdata, Socket: socket, Log: log})
	if err != nil {
		fmt.Fprintf(stderr, "walpush agent: %s\n", cli.OneLine(err))
		return cli.ExitCode(err)
	}
	if err := a.Serve(ctx); err != nil {
		fmt.Fprintf(stderr, "walpush agent: %s\n", cli.OneLine(err))
		return cli.ExitUnavailable
	}
	return cli.ExitOK
}

// pushFlags is walpush's own flag set, whose settings the [walpush]
// section of a config file shares with the agent's.
func pushFlags(getenv func(string) string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("walpush", pflag.ContinueOnError)
	c := cli.Common{Getenv: getenv}
	var cfg push.Config
	bind(fs, &c, &cfg)
	return fs
}

// agentFlags is the agent's flag set, for the same reason.
func agentFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("walpush agent", pflag.ContinueOnError)
	var pgdata, socket string
	bindAgent(fs, &pgdata, &socket)
	return fs
}
