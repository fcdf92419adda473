package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/client/push"
)

// dataDir is a directory that looks like a data directory to New.
func dataDir(t *testing.T) string {
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "pg_wal", "archive_status"), 0o700)
	os.WriteFile(filepath.Join(d, "PG_VERSION"), []byte("15\n"), 0o600)
	return d
}

func TestNewRefusesMistakes(t *testing.T) {
	d := dataDir(t)
	sock := filepath.Join(t.TempDir(), "a.sock")
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Socket: sock}, "--pgdata"},
		{Config{PGData: t.TempDir(), Socket: sock}, "not a PostgreSQL data directory"},
		{Config{PGData: d, Socket: "rel.sock"}, "absolute path"},
		{Config{PGData: d, Socket: "/" + strings.Repeat("x", 120)}, "longer than"},
	} {
		_, err := New(c.cfg)
		if !errors.Is(err, errkind.ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want a configuration error naming %q", c.cfg, err, c.want)
		}
	}
	// A path that is no socket is never replaced.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("keep"), 0o600)
	if _, err := New(Config{PGData: d, Socket: file}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("a regular file as the socket: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Fatal("the file was replaced")
	}
}

func TestSocketTakeover(t *testing.T) {
	d := dataDir(t)
	sock := filepath.Join(t.TempDir(), "a.sock")
	// A socket file left by a dead agent is replaced.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	a, err := New(Config{PGData: d, Socket: sock})
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Serve(ctx) }()
	// A live one is not taken over.
	if _, err := New(Config{PGData: d, Socket: sock}); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Fatalf("a second agent on a live socket: %v", err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v %v, want 0600", fi.Mode(), err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after a clean stop: %v", err)
	}
}

func ask(t *testing.T, sock, line string) string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, line)
	ans, _ := bufio.NewReader(c).ReadString('\n')
	return ans
}

func TestRequestsAreChecked(t *testing.T) {
	d := dataDir(t)
	sock := filepath.Join(t.TempDir(), "a.sock")
	seg := "000000010000000000000001"
	os.WriteFile(filepath.Join(d, "pg_wal", seg), make([]byte, 100), 0o600)
	os.WriteFile(filepath.Join(d, "pg_wal", "archive_status", seg+".ready"), nil, 0o600)
	a, err := New(Config{PGData: d, Socket: sock, Push: push.Config{ArchiveName: "main"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Serve(ctx)
	for _, c := range []struct{ line, want string }{
		{"HELLO\n", "unknown request"},
		{"ARCHIVE " + seg + "\n", "without a path"},
		{"ARCHIVE passwd /etc/passwd\n", "not a WAL file name"},
		{"ARCHIVE " + seg + " /etc/" + seg + "\n", "not in the pg_wal of"},
		{"ARCHIVE " + seg + " " + filepath.Join(d, "pg_wal", "..", "pg_wal", seg+"x") + "\n", "not in the pg_wal of"},
		{strings.Repeat("A", 9000) + "\n", "no request line"},
		// A real request for a file too short to be a segment: walpush's
		// own refusal, in one line.
		{"ARCHIVE " + seg + " " + filepath.Join(d, "pg_wal", seg) + "\n", "archive main:"},
	} {
		ans := ask(t, sock, c.line)
		if !strings.HasPrefix(ans, "ERROR ") || !strings.Contains(ans, c.want) || strings.Count(ans, "\n") != 1 {
			t.Errorf("%.60q: answer %q, want one ERROR line naming %q", c.line, ans, c.want)
		}
	}
}
