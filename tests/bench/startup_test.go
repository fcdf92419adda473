package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
)

// startCPU is the CPU (user + system) one start of argv costs, over n
// starts: what a process per segment pays before any work.
func startCPU(b *testing.B, n int, argv ...string) time.Duration {
	var total time.Duration
	for range n {
		cmd := exec.Command(argv[0], argv[1:]...)
		if err := cmd.Run(); err != nil {
			b.Fatalf("%v: %v", argv, err)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		total += time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))
	}
	return total / time.Duration(n)
}

// BenchmarkStartup prints the CPU a start of each binary costs (its
// --version: package initialisation, page faults, nothing else), against
// a Go hello world built with the same toolchain. restore_command runs
// walfetch once per segment, so this is paid per segment (issue 31's
// target: walfetch at most 1.5 times the hello world).
func BenchmarkStartup(b *testing.B) {
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.26\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hello\\n\") }\n"), 0o644)
	hello := filepath.Join(dir, "hello")
	build := exec.Command("go", "build", "-o", hello, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build hello: %v\n%s", err, out)
	}
	bins := testenv.Binaries(b)
	const n = 200
	base := startCPU(b, n, hello)
	b.Logf("start-up CPU per process, mean of %d starts:", n)
	b.Logf("  %-22s %6.2f ms", "Go hello world", base.Seconds()*1000)
	for _, c := range []struct{ name, bin string }{{"walfetch --version", bins.WalFetch}, {"walpush --version", bins.WalPush}, {"walstored --version", bins.WalStored}} {
		d := startCPU(b, n, c.bin, "--version")
		b.Logf("  %-22s %6.2f ms  (%.1fx the hello world)", c.name, d.Seconds()*1000, d.Seconds()/base.Seconds())
	}
}
