package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Walstored is a running walstored serve.
type Walstored struct {
	URL     string
	Addr    string
	LogFile string
	bin     string
	args    []string
	env     []string
	dir     string // working directory ("": the test's)
	tls     bool
	proc    process
}

// StartWalstored starts "walstored serve --listen 127.0.0.1:PORT args..."
// and waits for /healthz; env is added to its environment. Every --store
// is made a repository first (walstored init), as an operator does once.
func StartWalstored(t testing.TB, env []string, args ...string) *Walstored {
	t.Helper()
	for i, a := range args {
		if a == "--store" && i+1 < len(args) {
			InitRepo(t, args[i+1], env)
		}
	}
	return StartWalstoredRaw(t, env, args...)
}

var (
	initMu    sync.Mutex
	initiated = map[string]bool{}
)

// InitRepo runs "walstored init --store url" once per test process and
// fails the test if it fails.
func InitRepo(t testing.TB, url string, env []string) {
	t.Helper()
	initMu.Lock()
	defer initMu.Unlock()
	if initiated[url] {
		return
	}
	if res := Run(t, "/", env, Binaries(t).WalStored, "init", "--store", url); res.Code != 0 {
		t.Fatalf("walstored init --store %s: exit %d: %s", url, res.Code, res.Stderr)
	}
	initiated[url] = true
}

// StartWalstoredRaw is StartWalstored without the init.
func StartWalstoredRaw(t testing.TB, env []string, args ...string) *Walstored {
	t.Helper()
	return StartWalstoredIn(t, "", env, args...)
}

// StartWalstoredIn is StartWalstoredRaw run in directory dir (where
// walstored serve makes its default store when given no --store).
func StartWalstoredIn(t testing.TB, dir string, env []string, args ...string) *Walstored {
	t.Helper()
	w := &Walstored{
		dir:     dir,
		Addr:    fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		LogFile: filepath.Join(Dir(t), "walstored.log"),
		bin:     Binaries(t).WalStored,
		env:     env,
	}
	w.URL = "http://" + w.Addr
	for _, a := range args {
		if a == "--tls-cert" {
			w.URL, w.tls = "https://"+w.Addr, true
		}
	}
	w.args = append([]string{"serve", "--listen", w.Addr}, args...)
	w.Start(t)
	t.Cleanup(func() { w.Stop(t) })
	return w
}

// Start starts the daemon (again) and waits until it is healthy.
func (w *Walstored) Start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(w.bin, w.args...)
	cmd.Dir = w.dir
	cmd.Env = append(os.Environ(), w.env...)
	if err := w.proc.launch(cmd, w.LogFile, "walstored", 30*time.Second, w.ready); err != nil {
		t.Fatal(err)
	}
}

// Restart stops the daemon and starts it again, on the same address,
// with more flags.
func (w *Walstored) Restart(t testing.TB, more ...string) {
	t.Helper()
	w.Stop(t)
	w.args = append(w.args, more...)
	w.Start(t)
}

// Stop sends SIGTERM and waits for a graceful exit.
func (w *Walstored) Stop(t testing.TB) { w.signal(syscall.SIGTERM) }

// Kill9 kills the daemon with SIGKILL, as a crash.
func (w *Walstored) Kill9(t testing.TB) { w.signal(syscall.SIGKILL) }

func (w *Walstored) signal(sig syscall.Signal) { w.proc.stop(sig, 40*time.Second) }

// Log returns what the daemon logged.
func (w *Walstored) Log() string {
	b, _ := os.ReadFile(w.LogFile)
	return string(b)
}

// CPU returns the user+system CPU time the daemon has used so far.
func (w *Walstored) CPU() time.Duration { return w.proc.cpu() }

// ready: /healthz answers 200 (plain HTTP), or the port accepts
// connections (TLS, where the test's CA and client certificates decide
// who may talk).
func (w *Walstored) ready() bool {
	if w.tls {
		c, err := net.DialTimeout("tcp", w.Addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	resp, err := http.Get(w.URL + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// PID is the daemon's process id (0 when stopped).
func (w *Walstored) PID() int { return w.proc.pid() }
