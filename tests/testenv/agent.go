package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	moduleOnce sync.Once
	modulePath string
	moduleErr  error
)

// ArchiveModule builds client/archivemodule (the archive_library) with
// PGXS against Debian's postgresql-server-dev-15, once per test process,
// into a directory the postgres user can read, and returns the .so's
// path: archive_library takes it as is.
func ArchiveModule(t testing.TB) string {
	t.Helper()
	moduleOnce.Do(func() {
		pgConfig := filepath.Join(PGBin, "pg_config")
		if _, err := os.Stat("/usr/include/postgresql/15/server/postgres.h"); err != nil {
			moduleErr = fmt.Errorf("postgresql-server-dev-15 is not installed (no server headers): apt-get install -y postgresql-server-dev-15")
			return
		}
		dir, err := os.MkdirTemp("", "walstore-module-")
		if err != nil {
			moduleErr = err
			return
		}
		atExit(func() { os.RemoveAll(dir) })
		os.Chmod(dir, 0o755)
		src := filepath.Join(Root(), "client", "archivemodule")
		for _, f := range []string{"walstore.c", "Makefile"} {
			b, err := os.ReadFile(filepath.Join(src, f))
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, f), b, 0o644)
			}
			if err != nil {
				moduleErr = err
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "make", "-s", "PG_CONFIG="+pgConfig, "with_llvm=no", "walstore.so")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			moduleErr = fmt.Errorf("building the archive module: %v\n%s", err, out)
			return
		} else if len(out) > 0 {
			moduleErr = fmt.Errorf("the archive module builds with warnings:\n%s", out)
			return
		}
		modulePath = filepath.Join(dir, "walstore.so")
	})
	if moduleErr != nil {
		t.Fatal(moduleErr)
	}
	return modulePath
}

// Agent is a "walpush agent" process serving one cluster's archive module.
type Agent struct {
	Socket  string
	LogFile string
	args    []string
	env     []string
	proc    process
}

// StartAgent starts walpush agent for pgdata on a socket in a fresh
// directory, with the walpush flags in args, and waits until it accepts
// connections. It is stopped when the test ends.
func StartAgent(t testing.TB, pgdata string, env []string, args ...string) *Agent {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "wsa-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(sockDir, 0o755)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	a := &Agent{Socket: filepath.Join(sockDir, "agent.sock"), LogFile: filepath.Join(sockDir, "agent.log"), env: env}
	a.args = append([]string{"agent", "--pgdata", pgdata, "--agent-socket", a.Socket}, args...)
	a.Start(t)
	t.Cleanup(a.Stop)
	return a
}

// Conf is the postgresql.conf lines that archive through this agent.
func (a *Agent) Conf(t testing.TB, timeout string) []string {
	return []string{
		"archive_mode = on",
		"archive_library = '" + ArchiveModule(t) + "'",
		"walstore.agent_socket = '" + a.Socket + "'",
		"walstore.timeout = '" + timeout + "'",
	}
}

// Start starts the agent (again) and waits until it accepts
// connections.
func (a *Agent) Start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(Binaries(t).WalPush, a.args...)
	cmd.Env = append(os.Environ(), a.env...)
	listening := func() bool {
		c, err := net.Dial("unix", a.Socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if err := a.proc.launch(cmd, a.LogFile, "walpush agent", 30*time.Second, listening); err != nil {
		t.Fatal(err)
	}
}

// Log is what the agent wrote so far.
func (a *Agent) Log() string {
	b, _ := os.ReadFile(a.LogFile)
	return string(b)
}

// CPU is the agent's user+system CPU time so far.
func (a *Agent) CPU() time.Duration { return a.proc.cpu() }

// Stop sends SIGTERM and waits for the agent to exit.
func (a *Agent) Stop() { a.proc.stop(syscall.SIGTERM, 60*time.Second) }

// Kill9 kills the agent with SIGKILL, as a crash.
func (a *Agent) Kill9() { a.proc.stop(syscall.SIGKILL, 60*time.Second) }

// Freeze stops the agent with SIGSTOP (it hangs, holding its socket).
func (a *Agent) Freeze() { a.proc.send(syscall.SIGSTOP) }

// Thaw resumes a frozen agent.
func (a *Agent) Thaw() { a.proc.send(syscall.SIGCONT) }
