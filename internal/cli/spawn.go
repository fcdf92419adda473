package cli

import (
	"os"
	"os/exec"
	"syscall"

	"github.com/spf13/pflag"
)

// SpawnDetached starts the running binary again (os.Executable, never a
// lookup in PATH, which may find another walstore) as "SUB extra... flags",
// with every flag this call was given, in its own session so that
// PostgreSQL neither waits for it nor signals it. The child inherits the
// environment (token, credentials) and the working directory.
func SpawnDetached(fs *pflag.FlagSet, sub string, extra ...string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := append([]string{sub}, extra...)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Value.String() != f.DefValue {
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	cmd := exec.Command(exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}
