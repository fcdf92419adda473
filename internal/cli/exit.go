package cli

import (
	"errors"
	"strings"

	"github.com/walstore/walstore/internal/errkind"
)

// Exit codes shared by every binary (see the README's table).
const (
	ExitOK          = 0
	ExitFailure     = 1 // a definite "no": not found, refused (conflict, invalid, other system)
	ExitUsage       = 2 // bad flags, arguments or configuration (a token, key or CA file, a repository that is not one)
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
	case errors.Is(err, ErrUsage), errors.Is(err, errkind.ErrConfig):
		return ExitUsage
	case errors.Is(err, errkind.ErrCorrupt), errors.Is(err, errkind.ErrNoSpace):
		return ExitUnavailable
	case errkind.Permanent(err):
		return ExitFailure
	}
	return ExitUnavailable
}

// OneLine flattens an error message onto one line for stderr and logs.
func OneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
