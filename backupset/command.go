package backupset

import (
	"path/filepath"
	"strings"
	"time"
)

// CommandSettings are what a restore_command needs to reach the archive.
type CommandSettings struct {
	// WalFetch is the walfetch binary (an absolute path).
	WalFetch string
	// Config is the config file the restore used. When set, the command
	// names it and nothing else, so that a later change there (a new
	// host, a new CA) reaches every restored cluster and standby.
	Config string
	// Otherwise, the settings themselves (files by absolute path; never a
	// token itself).
	Repo, Archive                            string
	TokenFile, CACert, ClientCert, ClientKey string
	KeyFile, PassphraseFile, OldKeyFiles     string
	// Wait is walfetch's --wait (standbys).
	Wait time.Duration
}

// RestoreCommand is the restore_command line for s.
func RestoreCommand(s CommandSettings) string {
	words := []string{s.WalFetch}
	if s.Config != "" {
		words = append(words, "--config", abs(s.Config))
		if s.Archive != "" {
			words = append(words, "--archive", s.Archive)
		}
	} else {
		words = append(words, "--repo", s.Repo, "--archive", s.Archive)
		for _, f := range []struct{ flag, val string }{
			{"token-file", s.TokenFile}, {"cacert", s.CACert}, {"client-cert", s.ClientCert}, {"client-key", s.ClientKey},
			{"encryption-key-file", s.KeyFile}, {"encryption-passphrase-file", s.PassphraseFile}, {"decryption-key-files", s.OldKeyFiles},
		} {
			if f.val == "" {
				continue
			}
			var files []string
			for _, p := range strings.Split(f.val, ",") {
				files = append(files, abs(p))
			}
			words = append(words, "--"+f.flag, strings.Join(files, ","))
		}
	}
	if s.Wait > 0 {
		words = append(words, "--wait", s.Wait.String())
	}
	for i, w := range words {
		words[i] = ShellQuote(w)
	}
	return strings.Join(words, " ") + " %f %p"
}

func abs(p string) string {
	if a, err := filepath.Abs(strings.TrimSpace(p)); err == nil {
		return a
	}
	return p
}
