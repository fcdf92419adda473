// Package agent is the walpush agent: the long-lived process that archives
// for one PostgreSQL cluster when archive_library = 'walstore' (the C
// module in client/archivemodule) instead of archive_command.
//
// PostgreSQL 15 calls an archive module inside its archiver, so no process
// is started per file. The module connects to the agent's Unix socket,
// sends one line naming the file, and waits for one line back:
//
//	ARCHIVE <file> <absolute path>\n
//	OK <detail>\n | WARNING <message>\n | ERROR <message>\n
//
// The agent answers OK exactly when walpush would exit 0, after the same
// checks (push.Push: the file is PostgreSQL's, whole and .ready, of this
// cluster's pg_wal) and the same durable store. It is the push-ahead
// pusher made a service: its encoders, its repository connections and the
// facts it proved stay warm from one file to the next, and a request
// starts a push-ahead of the rest of the .ready backlog in-process.
//
// Who may ask: the socket belongs to the cluster's owner, mode 0600, and
// a peer whose uid is neither the data directory's owner nor the agent's
// is refused (SO_PEERCRED). What may be asked: only files of this
// cluster's pg_wal, by their WAL names; the agent reads nothing else.
package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/client/push"
	"github.com/walstore/walstore/wal"
)

// DefaultSocket is where the agent listens unless told otherwise; the
// module's walstore.agent_socket has the same default.
const DefaultSocket = "/run/walstore/agent.sock"

// MaxConns bounds the requests served at once: the archiver sends one at
// a time, and a misbehaving local client must not make the agent grow.
const MaxConns = 16

// requestTimeout bounds how long a connection may take to send its line.
const requestTimeout = 10 * time.Second

// maxLine is the longest request line read (a name and a path).
const maxLine = 8192

// maxAnswer is the longest answer line sent; the module reads at most 1 KiB.
const maxAnswer = 900

// Config is what the agent needs; main builds it from walpush's flags.
type Config struct {
	// Push is the configuration of every push, as walpush's.
	Push push.Config
	// PGData is the cluster's data directory; only its pg_wal is served.
	PGData string
	// Socket is the Unix socket to listen on.
	Socket string
	Log    *slog.Logger
	// Ready, when set, is called once the socket accepts connections.
	Ready func()
}

// Agent serves one cluster's archiver.
type Agent struct {
	cfg    Config
	walDir string
	owner  uint32 // uid of the data directory's owner
	self   uint32
	ln     *net.UnixListener
	wg     sync.WaitGroup
}

// New checks the configuration and takes the socket. A socket file left by
// an agent that died is replaced; one another agent listens on is refused.
func New(cfg Config) (*Agent, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.PGData == "" {
		return nil, fmt.Errorf("%w: the agent needs the cluster's data directory (--pgdata)", errkind.ErrConfig)
	}
	pgdata, err := filepath.Abs(cfg.PGData)
	if err != nil {
		return nil, err
	}
	cfg.PGData = pgdata
	fi, err := os.Stat(filepath.Join(pgdata, "PG_VERSION"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a PostgreSQL data directory: %v", errkind.ErrConfig, pgdata, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("cannot read the owner of %s", pgdata)
	}
	if !filepath.IsAbs(cfg.Socket) {
		return nil, fmt.Errorf("%w: --agent-socket %q: want an absolute path", errkind.ErrConfig, cfg.Socket)
	}
	if len(cfg.Socket) >= 108 {
		return nil, fmt.Errorf("%w: --agent-socket %q is longer than a Unix socket path can be (107 bytes)", errkind.ErrConfig, cfg.Socket)
	}
	a := &Agent{cfg: cfg, walDir: filepath.Join(pgdata, "pg_wal"), owner: st.Uid, self: uint32(os.Geteuid())}
	if err := clearStale(cfg.Socket); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Socket, err)
	}
	ln.SetUnlinkOnClose(true)
	// Only the cluster's owner may connect: the archiver runs as that
	// user, and the agent may run as it too or as root.
	if err := os.Chmod(cfg.Socket, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if a.self == 0 && a.owner != 0 {
		if err := os.Chown(cfg.Socket, int(a.owner), int(st.Gid)); err != nil {
			ln.Close()
			return nil, err
		}
	}
	a.ln = ln
	return a, nil
}

// clearStale removes a socket file nobody listens on; it refuses a path
// that is no socket, or one a live agent serves.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%w: %s exists and is not a socket: refusing to replace it", errkind.ErrInvalid, path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%w: another agent is listening on %s", errkind.ErrInvalid, path)
	}
	return os.Remove(path)
}

// Serve answers requests until ctx ends, then waits for the pushes in
// flight (each bounded by the push timeout) and removes the socket.
func (a *Agent) Serve(ctx context.Context) error {
	a.cfg.Log.Info("walpush agent serving", "pgdata", a.cfg.PGData, "socket", a.cfg.Socket, "archive", a.cfg.Push.ArchiveName, "repo", a.cfg.Push.Repo)
	go func() {
		<-ctx.Done()
		a.ln.Close()
	}()
	if a.cfg.Ready != nil {
		a.cfg.Ready()
	}
	slots := make(chan struct{}, MaxConns)
	// Pushes outlive a stop request: a file half-stored is finished or
	// fails by its own deadline, never cut off.
	pushCtx := context.WithoutCancel(ctx)
	var err error
	for {
		conn, aerr := a.ln.AcceptUnix()
		if aerr != nil {
			if ctx.Err() == nil {
				err = aerr
			}
			break
		}
		select {
		case slots <- struct{}{}:
		default:
			answer(conn, "ERROR", fmt.Sprintf("the agent is serving %d requests already", MaxConns))
			conn.Close()
			continue
		}
		a.wg.Add(1)
		go func() {
			defer func() { <-slots; a.wg.Done() }()
			defer conn.Close()
			a.serve(pushCtx, conn)
		}()
	}
	a.wg.Wait()
	return err
}

// serve answers one connection.
func (a *Agent) serve(ctx context.Context, conn *net.UnixConn) {
	if err := a.checkPeer(conn); err != nil {
		a.cfg.Log.Warn("refused a connection", "error", err.Error())
		answer(conn, "ERROR", err.Error())
		return
	}
	conn.SetReadDeadline(time.Now().Add(requestTimeout))
	line, err := bufio.NewReaderSize(io.LimitReader(conn, maxLine), maxLine).ReadString('\n')
	if err != nil {
		answer(conn, "ERROR", "no request line (want \"ARCHIVE <file> <path>\")")
		return
	}
	file, path, err := a.parse(strings.TrimSuffix(line, "\n"))
	if err != nil {
		a.cfg.Log.Warn("refused a request", "error", err.Error())
		answer(conn, "ERROR", err.Error())
		return
	}
	conn.SetReadDeadline(time.Time{})
	verb, msg := a.archive(ctx, file, path)
	answer(conn, verb, msg)
}

// archive pushes one file and says how it went, in the answer's words.
func (a *Agent) archive(ctx context.Context, file, path string) (verb, msg string) {
	res, err := push.Push(ctx, a.cfg.Push, path)
	if err != nil {
		msg := fmt.Sprintf("archive %s: %s", a.cfg.Push.ArchiveName, oneLine(err))
		a.cfg.Log.Warn("push failed; PostgreSQL will retry", "file", file, "error", msg)
		return "ERROR", msg
	}
	if w := res.Warning(a.cfg.Push.ArchiveName); w != "" {
		a.cfg.Log.Warn(w, "file", file)
		return "WARNING", w
	}
	a.cfg.Log.Debug("archived", "file", file, "outcome", res.Describe())
	return "OK", res.Describe()
}

// parse reads "ARCHIVE <file> <path>" and refuses anything but a WAL file
// name of this cluster's pg_wal.
func (a *Agent) parse(line string) (file, path string, err error) {
	rest, ok := strings.CutPrefix(line, "ARCHIVE ")
	if !ok {
		return "", "", fmt.Errorf("%w: unknown request %.40q (want \"ARCHIVE <file> <path>\")", errkind.ErrInvalid, line)
	}
	file, path, ok = strings.Cut(rest, " ")
	if !ok || path == "" {
		return "", "", fmt.Errorf("%w: request without a path (want \"ARCHIVE <file> <path>\")", errkind.ErrInvalid)
	}
	if _, err := wal.ParseName(file); err != nil {
		return "", "", fmt.Errorf("%w: %.80q is not a WAL file name: %v", errkind.ErrInvalid, file, err)
	}
	want := filepath.Join(a.walDir, file)
	if filepath.Clean(path) != want && !sameFile(path, want) {
		return "", "", fmt.Errorf("%w: %s is not in the pg_wal of %s, the only cluster this agent archives (a second cluster needs its own agent and socket)", errkind.ErrInvalid, path, a.cfg.PGData)
	}
	return file, want, nil
}

// sameFile: two spellings of one file (a symlinked data directory).
func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// checkPeer refuses a client that is neither the cluster's owner (the
// archiver) nor the agent's own user.
func (a *Agent) checkPeer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("cannot tell who connected: %v", cerr)
	}
	if cred.Uid != a.owner && cred.Uid != a.self {
		return fmt.Errorf("%w: uid %d (pid %d) may not ask: only the owner of %s (uid %d) may", errkind.ErrForbidden, cred.Uid, cred.Pid, a.cfg.PGData, a.owner)
	}
	return nil
}

// answer writes the one answer line, on one line and short enough for the
// module's buffer.
func answer(conn net.Conn, verb, msg string) {
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > maxAnswer {
		msg = msg[:maxAnswer] + "..."
	}
	conn.SetWriteDeadline(time.Now().Add(requestTimeout))
	fmt.Fprintf(conn, "%s %s\n", verb, msg)
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
