// Package testenv starts the real components walstore's tests run against:
// PostgreSQL 15 clusters (initdb on free ports, as the postgres user), a
// MinIO server on loopback, walstored, and the three binaries built once
// per test process. Nothing here skips: if a component cannot start, the
// test fails and says why.
//
// Tests run as root, and PostgreSQL refuses root, so everything PostgreSQL
// touches is made by Dir (world-traversable) and handed to postgres.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

// atExit registers process-wide cleanup run by Main.
func atExit(f func()) {
	cleanupMu.Lock()
	cleanups = append(cleanups, f)
	cleanupMu.Unlock()
}

// Main runs the tests and then stops what was shared between them (the
// built binaries, a shared MinIO). Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	return code
}

// Root is the module's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Dir makes a fresh directory that the postgres user can traverse, removed
// when the test ends.
func Dir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "walstore-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// PostgresDir makes a directory owned by postgres with mode 0700 inside
// parent.
func PostgresDir(t testing.TB, parent, name string) string {
	t.Helper()
	d := filepath.Join(parent, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	Chown(t, d)
	return d
}

// Chown hands path (recursively) to the postgres user.
func Chown(t testing.TB, path string) {
	t.Helper()
	uid, gid := postgresIDs(t)
	err := filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func postgresIDs(t testing.TB) (int, int) {
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("the postgres user is missing (install postgresql-15): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// handedOut is every port freePort returned in this process: tests run
// in parallel, and a port picked for one must not be picked again for
// another before the first has bound it.
var (
	portsMu   sync.Mutex
	handedOut = map[int]bool{}
)

func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut[p] {
			handedOut[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port not handed out already")
}

// WaitFor polls cond every 50 ms until it returns true or d passes.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Bins are the walstore binaries, built once per test process.
type Bins struct {
	Dir       string
	WalPush   string
	WalFetch  string
	WalStored string
}

var (
	binsOnce sync.Once
	bins     Bins
	binsErr  error
)

// Binaries builds cmd/walpush, cmd/walfetch and cmd/walstored into a
// directory every user can execute from.
func Binaries(t testing.TB) Bins {
	t.Helper()
	binsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "walstore-bin-")
		if err != nil {
			binsErr = err
			return
		}
		atExit(func() { os.RemoveAll(dir) })
		os.Chmod(dir, 0o755)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir, "./cmd/walpush", "./cmd/walfetch", "./cmd/walstored")
		cmd.Dir = Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			binsErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		bins = Bins{Dir: dir, WalPush: filepath.Join(dir, "walpush"), WalFetch: filepath.Join(dir, "walfetch"), WalStored: filepath.Join(dir, "walstored")}
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return bins
}

// Result is the outcome of a command run by Run.
type Result struct {
	Code   int
	Stdout string
	Stderr string
	Took   time.Duration
}

// Run runs a command with env added to the environment and returns its
// exit code and output; it fails the test only if the command cannot be
// started.
func Run(t testing.TB, dir string, env []string, name string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String(), Took: time.Since(start)}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %s: %v", name, err)
		}
		res.Code = ee.ExitCode()
	}
	return res
}

// ProcessCPU reads a process's user+system CPU time from /proc.
func ProcessCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// ChildrenCPU is the CPU time used by all waited-for child processes.
func ChildrenCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
