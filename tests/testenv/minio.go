package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIO is a MinIO server on loopback with its own data directory.
type MinIO struct {
	Endpoint  string // 127.0.0.1:port
	AccessKey string
	SecretKey string
	Bucket    string
	bin       string
	dataDir   string
	drives    int // >1: erasure coded over dataDir/d1 ... dN
	logFile   string
	port      int
	console   int
	proc      process
}

// MinIOBinary finds the minio binary: $WALSTORE_MINIO, then PATH, then the
// cache `make minio` builds into (~/.cache/walstore/bin).
func MinIOBinary() (string, error) {
	if p := os.Getenv("WALSTORE_MINIO"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, ".cache", "walstore", "bin", "minio")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no minio binary: set WALSTORE_MINIO, put minio on PATH, or run `make minio` (builds %s)", p)
	}
	return p, nil
}

var (
	sharedOnce  sync.Once
	sharedMinIO *MinIO
	sharedErr   error
)

// SharedMinIO returns one MinIO server for the whole test process (each
// test should use its own bucket prefix or archive names).
func SharedMinIO(t testing.TB) *MinIO {
	t.Helper()
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "walstore-minio-")
		if err != nil {
			sharedErr = err
			return
		}
		m, err := startMinIO(dir, 1)
		if err != nil {
			os.RemoveAll(dir)
			sharedErr = err
			return
		}
		atExit(func() { m.stop(); os.RemoveAll(dir) })
		sharedMinIO = m
	})
	if sharedErr != nil {
		t.Fatalf("MinIO: %v", sharedErr)
	}
	return sharedMinIO
}

// StartMinIO starts a MinIO server owned by the test (for tests that stop
// and restart it).
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	return StartMinIODrives(t, 1)
}

// StartMinIODrives starts a MinIO server owned by the test, erasure coded
// over n drives (directories; see Drive) when n > 1, the way a
// distributed deployment keeps data: with 4 drives it reads with any 2
// and writes with any 3.
func StartMinIODrives(t testing.TB, n int) *MinIO {
	t.Helper()
	m, err := startMinIO(Dir(t), n)
	if err != nil {
		t.Fatalf("MinIO: %v", err)
	}
	t.Cleanup(m.stop)
	return m
}

func startMinIO(dir string, drives int) (*MinIO, error) {
	bin, err := MinIOBinary()
	if err != nil {
		return nil, err
	}
	m := &MinIO{
		AccessKey: "walstore-test",
		SecretKey: "walstore-test-secret",
		Bucket:    "walstore",
		bin:       bin,
		dataDir:   filepath.Join(dir, "data"),
		drives:    drives,
		logFile:   filepath.Join(dir, "minio.log"),
	}
	if err := os.MkdirAll(m.dataDir, 0o755); err != nil {
		return nil, err
	}
	for i := 1; i <= drives && drives > 1; i++ {
		if err := os.MkdirAll(m.Drive(i), 0o755); err != nil {
			return nil, err
		}
	}
	if m.port, err = freePort(); err != nil {
		return nil, err
	}
	if m.console, err = freePort(); err != nil {
		return nil, err
	}
	m.Endpoint = fmt.Sprintf("127.0.0.1:%d", m.port)
	if err := m.start(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Client().MakeBucket(ctx, m.Bucket, minio.MakeBucketOptions{}); err != nil {
		m.stop()
		return nil, fmt.Errorf("make bucket: %v", err)
	}
	return m, nil
}

func (m *MinIO) start() error {
	data := m.dataDir
	if m.drives > 1 {
		data = fmt.Sprintf("%s/d{1...%d}", m.dataDir, m.drives)
	}
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.Endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", m.console), data)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	if m.drives > 1 {
		// Several drives on one disk (the root disk, here) are refused
		// outside CI/CD mode.
		cmd.Env = append(cmd.Env, "MINIO_CI_CD=1")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return m.proc.launch(cmd, m.logFile, "minio", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + m.Endpoint + "/minio/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Drive is the directory of drive i (1 to n) of an erasure-coded server.
func (m *MinIO) Drive(i int) string { return filepath.Join(m.dataDir, fmt.Sprintf("d%d", i)) }

// Stop stops the server (by its PID), keeping its data.
func (m *MinIO) Stop(t testing.TB) { m.stop() }

// Restart starts a stopped server again on the same port and data.
func (m *MinIO) Restart(t testing.TB) {
	t.Helper()
	if err := m.start(); err != nil {
		t.Fatalf("restart MinIO: %v", err)
	}
}

func (m *MinIO) stop() { m.proc.stop(syscall.SIGTERM, 10*time.Second) }

// Client returns a minio-go client for direct inspection.
func (m *MinIO) Client() *minio.Client {
	c, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		panic(err)
	}
	return c
}

// URL is the s3:// repository URL of prefix in the test bucket.
func (m *MinIO) URL(prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&tls=false&region=us-east-1", m.Bucket, prefix, m.Endpoint)
}

// Env is the environment a client needs to reach the server.
func (m *MinIO) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + m.AccessKey, "AWS_SECRET_ACCESS_KEY=" + m.SecretKey}
}
