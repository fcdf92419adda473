package cli

import (
	"errors"
	"strings"

	"github.com/walstore/walstore/base/errkind"
)

// Exit codes shared by every binary (see the README's table).
const (
	ExitOK          = 0
	ExitFailure     = 1 // a definite "no": not found, refused (conflict, invalid, other system)
	ExitUsage       = 2 // bad flags, arguments or configuration (a token, key or CA file, a repository that is not one, a token walstored refuses)
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
	case errors.Is(err, ErrUsage), errors.Is(err, errkind.ErrConfig), Refused(err):
		return ExitUsage
	case errors.Is(err, errkind.ErrCorrupt), errors.Is(err, errkind.ErrNoSpace):
		return ExitUnavailable
	case errkind.Permanent(err):
		return ExitFailure
	}
	return ExitUnavailable
}

// Refused reports whether walstored (or a store) refused the client's
// credentials: no token, a wrong one, or one without the scope or
// archive asked for. That is this host's configuration, the same for
// every binary (exit 2), never "not found" and never "try again".
func Refused(err error) bool {
	return errors.Is(err, errkind.ErrUnauthorized) || errors.Is(err, errkind.ErrForbidden)
}

// OneLine flattens an error message onto one line for stderr and logs.
func OneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
