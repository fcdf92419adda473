package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/archive"
)

// Exit codes shared by every binary (see the README's table).
const (
	ExitOK          = 0
	ExitFailure     = 1 // a definite "no": not found, refused (conflict, invalid, other system)
	ExitUsage       = 2 // bad flags or arguments
	ExitUnavailable = 3 // could not get an answer: repository unreachable, timeout, full, corrupt object
	// ExitFatalRecovery is walfetch's code for "stop, do not end recovery"
	// during archive recovery: PostgreSQL treats an exit status above 125
	// from restore_command as fatal, instead of as the end of the archive.
	ExitFatalRecovery = 200
)

// ExitCode maps an error onto the shared exit codes.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrUsage):
		return ExitUsage
	case errors.Is(err, archive.ErrCorrupt), errors.Is(err, archive.ErrNoSpace):
		return ExitUnavailable
	case archive.Permanent(err):
		return ExitFailure
	}
	return ExitUnavailable
}

// Usage prints a one-line synopsis and the flags.
func Usage(w io.Writer, synopsis string, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n\nflags:\n%s", synopsis, fs.FlagUsages())
}

// OneLine flattens an error message onto one line for stderr and logs.
func OneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
