// Package cli is what the three binaries share between flag parsing and
// the feature packages: the common flags, their environment variables and
// config file, opening the repository, and the exit codes. It keeps the
// mains thin and makes every binary behave the same way.
//
// Every flag --some-name can also come from the environment variable
// WALSTORE_SOME_NAME or from the config file (--config, WALSTORE_CONFIG)
// as "some-name = value". Flags win over the environment, the environment
// over the file.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/store/multistore"
	"github.com/walstore/walstore/store/retrystore"
	"github.com/walstore/walstore/store/storeurl"
)

// Common holds the settings every command shares.
type Common struct {
	Repo           string
	Archive        string
	TokenFile      string
	CACert         string
	ClientCert     string
	ClientKey      string
	Config         string
	Verbose        bool
	DefaultRepo    string // used when --repo is empty (walstored serve)
	ReadOnly       bool   // the command never writes (opens a file store read-only, skips S3 write checks)
	NoCache        bool   // read past walstored's cache (admin commands)
	KeyFile        string
	PassphraseFile string
	OldKeyFiles    string
	Getenv         func(string) string
	// Cache, when set, remembers what a repository proved once (its
	// marker, conditional writes, bindings) between calls.
	Cache *RepoCache
	// FailFast: a walstored that refuses connections fails the call at
	// once instead of being retried until the timeout (archive_command:
	// PostgreSQL calls again anyway).
	FailFast bool
	// FailFastFirst: a walstored that refuses the first connection fails
	// the command at once (it is not running); once it answered, a
	// restart during a long job is waited for (admin commands).
	FailFastFirst bool
}

// Bind adds the shared flags to fs.
func (c *Common) Bind(fs *pflag.FlagSet) {
	fs.Var(&repoValue{s: &c.Repo}, "repo", "repository `URL`: http(s)://host:7480 (several walstored in front of one store: give it again, or comma-separated), file:///dir or s3://bucket/prefix?endpoint=host:port (env WALSTORE_REPO)")
	fs.StringVar(&c.Archive, "archive", archive.DefaultArchive, "archive name, one per PostgreSQL cluster (env WALSTORE_ARCHIVE)")
	fs.StringVar(&c.TokenFile, "token-file", "", "file holding the walstored token (env WALSTORE_TOKEN_FILE; or the token itself in WALSTORE_TOKEN)")
	fs.StringVar(&c.CACert, "cacert", "", "CA certificate that signs walstored's TLS certificate (env WALSTORE_CACERT)")
	fs.StringVar(&c.ClientCert, "client-cert", "", "client certificate for TLS (env WALSTORE_CLIENT_CERT)")
	fs.StringVar(&c.ClientKey, "client-key", "", "key of --client-cert (env WALSTORE_CLIENT_KEY)")
	fs.StringVar(&c.Config, "config", "", "config file of key = value lines (env WALSTORE_CONFIG)")
	fs.StringVar(&c.KeyFile, "encryption-key-file", "", "encrypt what is written and decrypt what is read with this archive key (walstored key makes one)")
	fs.StringVar(&c.PassphraseFile, "encryption-passphrase-file", "", "derive the archive key from the passphrase in this file instead")
	fs.StringVar(&c.OldKeyFiles, "decryption-key-files", "", "comma-separated older key files, still used to read what they encrypted (key rotation)")
	fs.BoolVarP(&c.Verbose, "verbose", "v", false, "say what was done on success")
}

// repoValue is --repo. Given again (or on several repo lines of a config
// file), the walstored URLs add up to one list, in order: the
// comma-separated form that store/storeurl opens as one repository
// through several instances.
type repoValue struct {
	s   *string
	set bool
}

func (v *repoValue) Set(x string) error {
	if v.set && *v.s != "" {
		*v.s += "," + x
	} else {
		*v.s = x
	}
	v.set = true
	return nil
}

func (v *repoValue) String() string { return *v.s }

// Type says "a list" to Parse and readConfig, which repeat list settings
// (like --store) instead of refusing them twice.
func (v *repoValue) Type() string { return "stringArray" }

// ErrUsage marks command-line and configuration mistakes (exit 2).
var ErrUsage = errors.New("usage")

// Token returns the walstored token from --token-file or WALSTORE_TOKEN.
// Tokens never come from argv, where ps shows them. A file that is
// missing, empty, unreadable, or readable by every user is refused at
// once (ErrConfig): no retry can fix it.
func (c *Common) Token() (string, error) {
	if c.TokenFile != "" {
		b, err := readSecret("--token-file", c.TokenFile)
		if err != nil {
			return "", err
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("%w: token file %s is empty", errkind.ErrConfig, c.TokenFile)
		}
		return tok, nil
	}
	if c.Getenv != nil {
		return strings.TrimSpace(c.Getenv("WALSTORE_TOKEN")), nil
	}
	return "", nil
}

// readSecret reads a file holding a secret (token, key, passphrase).
func readSecret(flag, path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %v", errkind.ErrConfig, flag, path, unwrapPath(err))
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return nil, fmt.Errorf("%w: %s %s is readable by every user (mode %04o): it holds a secret; chmod o-r it", errkind.ErrConfig, flag, path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %v", errkind.ErrConfig, flag, path, unwrapPath(err))
	}
	return b, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// RepoURL is --repo, or the default, or a usage error.
func (c *Common) RepoURL() (string, error) {
	if c.Repo != "" {
		return c.Repo, nil
	}
	if c.DefaultRepo != "" {
		return c.DefaultRepo, nil
	}
	return "", fmt.Errorf("%w: no repository: give --repo or set WALSTORE_REPO", ErrUsage)
}

// Check validates the archive name and the repository URL without
// touching the network; mistakes there are usage errors.
func (c *Common) Check() error {
	if err := archive.ValidArchiveName(c.Archive); err != nil {
		return fmt.Errorf("%w: --archive: %v", ErrUsage, err)
	}
	u, err := c.RepoURL()
	if err != nil {
		return err
	}
	if err := storeurl.Check(u); err != nil {
		return fmt.Errorf("%w: --repo: %v", ErrUsage, err)
	}
	return nil
}

// access is what this client brings to the repository's store; the
// backend takes its part (store.Access).
func (c *Common) access(u string) (store.Access, error) {
	tok, err := c.Token()
	if err != nil {
		return store.Access{}, err
	}
	a := store.Access{
		Getenv: c.Getenv, Token: tok, CACert: c.CACert, ClientCert: c.ClientCert, ClientKey: c.ClientKey,
		ReadOnly: c.ReadOnly, NoCache: c.NoCache,
	}
	if cache := c.Cache; cache != nil {
		a.Known = func(fact string) bool { return cache.Proven(u, fact) }
		a.Learned = func(fact string) { cache.Prove(u, fact) }
		a.First = cache.Preferred(u)
		a.OnSwitch = func(i int) { cache.Prefer(u, i) }
	}
	return a, nil
}

// OpenStore opens the repository, wrapped so that passing failures are
// retried within ctx. A file:// or s3:// location must be a walstore
// repository (its marker): clients never create one.
func (c *Common) OpenStore(ctx context.Context) (store.Store, error) {
	s, err := c.OpenRaw(ctx, true)
	if err != nil {
		return nil, err
	}
	opt := retrystore.Options{}
	unreachable := func(err error) bool { return errors.Is(err, httpstore.ErrUnreachable) }
	if c.FailFast {
		opt.FailFast = unreachable
	} else if c.FailFastFirst {
		opt.FailFastFirst = unreachable
	}
	st, _, err := storeurl.Compose([]multistore.Member{{Name: store.Describe(s), Store: s}}, storeurl.Layers{Retry: &opt})
	return st, err
}

// OpenRaw opens the repository's store as it is; checkMarker refuses a
// location that is not a walstore repository (walstored init does not).
func (c *Common) OpenRaw(ctx context.Context, checkMarker bool) (store.Store, error) {
	u, err := c.RepoURL()
	if err != nil {
		return nil, err
	}
	if err := storeurl.Check(u); err != nil {
		return nil, fmt.Errorf("%w: --repo: %v", ErrUsage, err)
	}
	b, err := storeurl.Lookup(u)
	if err != nil {
		return nil, err
	}
	acc, err := c.access(u)
	if err != nil {
		return nil, err
	}
	// Opening may talk to the store (S3's conditional-write check); a
	// passing failure there is retried like any other, within ctx.
	var s store.Store
	err = store.Retry(ctx, store.Backoff{}, func(ctx context.Context) error {
		var oerr error
		s, oerr = b.Open(ctx, u, acc)
		return oerr
	})
	if err != nil {
		return nil, err
	}
	if checkMarker && !b.Served {
		if c.Cache == nil || !c.Cache.Proven(u, "marker") {
			err := store.Retry(ctx, store.Backoff{}, func(ctx context.Context) error {
				return archive.CheckRepository(ctx, s, u)
			})
			if err != nil {
				return nil, err
			}
			if c.Cache != nil {
				c.Cache.Prove(u, "marker")
			}
		}
	}
	return s, nil
}

// OpenArchive opens the repository and the archive in it, with the
// archive's keys.
func (c *Common) OpenArchive(ctx context.Context) (*archive.Archive, error) {
	keys, err := c.Keyring()
	if err != nil {
		return nil, err
	}
	s, err := c.OpenStore(ctx)
	if err != nil {
		return nil, err
	}
	a, err := archive.New(s, c.Archive)
	if err != nil {
		return nil, err
	}
	a.Keys = keys
	if c.Cache != nil {
		u, _ := c.RepoURL()
		a.Cache = c.Cache.Bindings(u)
	}
	return a, nil
}

// Keyring reads the encryption settings; nil when there are none.
func (c *Common) Keyring() (*envelope.Keyring, error) {
	if c.KeyFile == "" && c.PassphraseFile == "" && c.OldKeyFiles == "" {
		return nil, nil
	}
	if c.KeyFile != "" && c.PassphraseFile != "" {
		return nil, fmt.Errorf("%w: give --encryption-key-file or --encryption-passphrase-file, not both", ErrUsage)
	}
	kr := &envelope.Keyring{}
	switch {
	case c.KeyFile != "":
		b, err := readSecret("--encryption-key-file", c.KeyFile)
		if err != nil {
			return nil, err
		}
		if kr.Encrypt, err = envelope.ParseKey(b); err != nil {
			return nil, fmt.Errorf("%w: --encryption-key-file %s: %v", errkind.ErrConfig, c.KeyFile, err)
		}
	case c.PassphraseFile != "":
		b, err := readSecret("--encryption-passphrase-file", c.PassphraseFile)
		if err != nil {
			return nil, err
		}
		if kr.Encrypt, err = envelope.KeyFromPassphrase(b, c.Archive); err != nil {
			return nil, fmt.Errorf("%w: --encryption-passphrase-file: %v", errkind.ErrConfig, err)
		}
	}
	for _, f := range strings.Split(c.OldKeyFiles, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		b, err := readSecret("--decryption-key-files", f)
		if err != nil {
			return nil, err
		}
		k, err := envelope.ParseKey(b)
		if err != nil {
			return nil, fmt.Errorf("%w: --decryption-key-files %s: %v", errkind.ErrConfig, f, err)
		}
		kr.Decrypt = append(kr.Decrypt, k)
	}
	return kr, nil
}

// Opener returns a function that opens the archive on first use and then
// returns the same handle: commands that can often answer locally (a
// prefetched segment, a push-ahead marker) never touch the network then.
func (c *Common) Opener() func(context.Context) (*archive.Archive, error) {
	var (
		mu  sync.Mutex
		a   *archive.Archive
		err error
	)
	return func(ctx context.Context) (*archive.Archive, error) {
		mu.Lock()
		defer mu.Unlock()
		if a == nil {
			a, err = c.OpenArchive(ctx)
			if err != nil {
				a = nil
			}
		}
		return a, err
	}
}

// Usage prints a one-line synopsis and the flags.
func Usage(w io.Writer, synopsis string, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n\nflags:\n%s", synopsis, fs.FlagUsages())
}

// AbsPath is p made absolute (p itself if that fails).
func AbsPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
