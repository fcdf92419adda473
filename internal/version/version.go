// Package version says which walstore a binary is: the version the build
// was given (make sets it from git describe), the commit and the Go
// version, read from the binary's own build information.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set at build time (-ldflags "-X .../version.Version=v1.2.3");
// a plain go build says "devel".
var Version = "devel"

// Commit is set at build time too; else it is read from the build
// information Go stamps into a binary built in a git checkout.
var Commit = ""

// String is what --version prints: "walstore VERSION (commit C[, modified], GO)".
func String(program string) string {
	commit, dirty := "unknown", false
	if Commit != "" {
		commit = Commit
	} else if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
				if len(commit) > 12 {
					commit = commit[:12]
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		commit += ", modified"
	}
	return fmt.Sprintf("%s (walstore) %s (commit %s, %s)", program, Version, commit, runtime.Version())
}
