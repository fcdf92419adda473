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
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/storeurl"
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
	ReadOnly       bool   // the command never writes (skips S3 write checks)
	NoCache        bool   // read past walstored's cache (admin commands)
	KeyFile        string
	PassphraseFile string
	OldKeyFiles    string
	Getenv         func(string) string
}

// Bind adds the shared flags to fs.
func (c *Common) Bind(fs *pflag.FlagSet) {
	fs.StringVar(&c.Repo, "repo", "", "repository: http(s)://host:7480, file:///dir or s3://bucket/prefix?endpoint=host:port (env WALSTORE_REPO)")
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

// sharedKeys may appear at the top of a config file, before any section.
var sharedKeys = map[string]bool{"repo": true, "archive": true, "token-file": true, "cacert": true, "client-cert": true, "client-key": true, "verbose": true,
	"encryption-key-file": true, "encryption-passphrase-file": true, "decryption-key-files": true}

// ErrUsage marks command-line mistakes (exit 2).
var ErrUsage = errors.New("usage")

// Parse parses args into fs and fills every flag not given on the command
// line from the environment and then from the config file. section names
// the binary's own part of the config file ([walpush], ...).
func Parse(fs *pflag.FlagSet, args []string, getenv func(string) string, section string) error {
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	var file map[string]string
	cfgPath := ""
	if f := fs.Lookup("config"); f != nil {
		cfgPath = f.Value.String()
		if cfgPath == "" {
			cfgPath = getenv("WALSTORE_CONFIG")
		}
	}
	if cfgPath != "" {
		var err error
		if file, err = readConfig(cfgPath, section, fs); err != nil {
			return fmt.Errorf("%w: %v", ErrUsage, err)
		}
	}
	var ferr error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || ferr != nil || f.Name == "config" {
			return
		}
		env := "WALSTORE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, src := getenv(env), env
		if v == "" {
			v, src = file[f.Name], cfgPath
		}
		if v == "" {
			return
		}
		values := []string{v}
		if f.Value.Type() == "stringArray" {
			values = strings.Fields(v) // several stores: space-separated
		}
		for _, one := range values {
			if err := fs.Set(f.Name, one); err != nil {
				ferr = fmt.Errorf("%w: %s: --%s=%q: %v", ErrUsage, src, f.Name, one, err)
			}
		}
	})
	return ferr
}

// readConfig reads key = value lines. Keys before any [section] must be
// shared keys; keys in [section] must be flags of fs; other sections
// belong to other binaries and are skipped.
func readConfig(path, section string, fs *pflag.FlagSet) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %v", err)
	}
	defer f.Close()
	out := map[string]string{}
	cur := ""
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' || s[0] == ';' {
			continue
		}
		if s[0] == '[' && s[len(s)-1] == ']' {
			cur = strings.TrimSpace(s[1 : len(s)-1])
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want key = value", path, line)
		}
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
		switch {
		case cur == "" && !sharedKeys[k]:
			return nil, fmt.Errorf("%s:%d: %q is not a shared setting; put it under [%s] or the section of the binary it is for", path, line, k, section)
		case cur != "" && cur != section:
			continue
		case fs.Lookup(k) == nil || k == "config":
			return nil, fmt.Errorf("%s:%d: unknown setting %q for %s", path, line, k, section)
		}
		out[k] = v
	}
	return out, sc.Err()
}

// Token returns the walstored token from --token-file or WALSTORE_TOKEN.
// Tokens never come from argv, where ps shows them.
func (c *Common) Token() (string, error) {
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return "", fmt.Errorf("%w: token file: %v", ErrUsage, err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("%w: token file %s is empty", ErrUsage, c.TokenFile)
		}
		return tok, nil
	}
	if c.Getenv != nil {
		return strings.TrimSpace(c.Getenv("WALSTORE_TOKEN")), nil
	}
	return "", nil
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

// OpenStore opens the repository.
func (c *Common) OpenStore(ctx context.Context) (archive.Store, error) {
	u, err := c.RepoURL()
	if err != nil {
		return nil, err
	}
	tok, err := c.Token()
	if err != nil {
		return nil, err
	}
	getenv := c.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	opt := storeurl.Options{}
	opt.HTTP.Token = tok
	opt.HTTP.CACertFile = c.CACert
	opt.HTTP.ClientCertFile, opt.HTTP.ClientKeyFile = c.ClientCert, c.ClientKey
	opt.HTTP.NoCache = c.NoCache
	opt.S3.AccessKey = getenv("AWS_ACCESS_KEY_ID")
	opt.S3.SecretKey = getenv("AWS_SECRET_ACCESS_KEY")
	opt.S3.SessionToken = getenv("AWS_SESSION_TOKEN")
	if opt.S3.AccessKey == "" {
		opt.S3.AccessKey, opt.S3.SecretKey = getenv("MINIO_ACCESS_KEY"), getenv("MINIO_SECRET_KEY")
	}
	opt.S3.ReadOnly = c.ReadOnly
	// Opening talks to the store (S3 checks the bucket); a passing failure
	// there is retried like any other, within the caller's deadline.
	var s archive.Store
	err = archive.Retry(ctx, archive.Backoff{}, func(ctx context.Context) error {
		var oerr error
		s, oerr = storeurl.Open(ctx, u, opt)
		return oerr
	})
	return s, err
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
	return a, nil
}

// Keyring reads the encryption settings; nil when there are none.
func (c *Common) Keyring() (*archive.Keyring, error) {
	if c.KeyFile == "" && c.PassphraseFile == "" && c.OldKeyFiles == "" {
		return nil, nil
	}
	if c.KeyFile != "" && c.PassphraseFile != "" {
		return nil, fmt.Errorf("%w: give --encryption-key-file or --encryption-passphrase-file, not both", ErrUsage)
	}
	kr := &archive.Keyring{}
	read := func(flag, path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%w: --%s: %v", ErrUsage, flag, err)
		}
		return b, nil
	}
	switch {
	case c.KeyFile != "":
		b, err := read("encryption-key-file", c.KeyFile)
		if err != nil {
			return nil, err
		}
		if kr.Encrypt, err = archive.ParseKey(b); err != nil {
			return nil, fmt.Errorf("%w: --encryption-key-file %s: %v", ErrUsage, c.KeyFile, err)
		}
	case c.PassphraseFile != "":
		b, err := read("encryption-passphrase-file", c.PassphraseFile)
		if err != nil {
			return nil, err
		}
		if kr.Encrypt, err = archive.KeyFromPassphrase(b, c.Archive); err != nil {
			return nil, fmt.Errorf("%w: --encryption-passphrase-file: %v", ErrUsage, err)
		}
	}
	for _, f := range strings.Split(c.OldKeyFiles, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		b, err := read("decryption-key-files", f)
		if err != nil {
			return nil, err
		}
		k, err := archive.ParseKey(b)
		if err != nil {
			return nil, fmt.Errorf("%w: --decryption-key-files %s: %v", ErrUsage, f, err)
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
