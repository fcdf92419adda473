package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walstore/walstore/tests/testenv"
)

// The units in deploy/systemd pass systemd-analyze verify (instantiated
// for an archive "main", pointing at the binaries just built), and every
// command line they run is one walstored accepts.
func TestSystemdUnitsVerify(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed: make test installs it (Debian package systemd)")
	}
	bins := testenv.Binaries(t)
	src := filepath.Join(testenv.Root(), "deploy", "systemd")
	dir := t.TempDir()
	units, _ := filepath.Glob(filepath.Join(src, "*"))
	if len(units) < 5 {
		t.Fatalf("expected walstored.service and the backup/retain services and timers, found %v", units)
	}
	var args []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "/usr/local/bin/walstored", bins.WalStored)
		text = strings.ReplaceAll(text, "/usr/local/bin/walpush", bins.WalPush)
		name := strings.Replace(filepath.Base(u), "@.", "@main.", 1)
		os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644)
		args = append(args, filepath.Join(dir, name))
		for _, line := range strings.Split(text, "\n") {
			cmd, ok := strings.CutPrefix(line, "ExecStart=")
			if !ok {
				continue
			}
			f := strings.Fields(strings.ReplaceAll(cmd, "%i", "main"))
			res := testenv.Run(t, dir, nil, f[0], append(f[1:2], "--help")...)
			if res.Code != 0 {
				t.Errorf("%s: %q --help: exit %d: %s", name, cmd, res.Code, res.Stderr)
			}
		}
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, args...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
