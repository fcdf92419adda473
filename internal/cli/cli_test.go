package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/base/errkind"
)

func flags() (*pflag.FlagSet, *Common, *int) {
	fs := pflag.NewFlagSet("walpush", pflag.ContinueOnError)
	c := &Common{}
	c.Bind(fs)
	jobs := fs.Int("jobs", 4, "")
	return fs, c, jobs
}

// Flags win over the environment, the environment over the config file.
func TestPrecedence(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "walstore.conf")
	os.WriteFile(cfg, []byte(`# shared
repo = http://file:7480
archive = fromfile
[walpush]
jobs = 7
[walfetch]
prefetch = 3
`), 0o600)
	env := map[string]string{"WALSTORE_ARCHIVE": "fromenv", "WALSTORE_CONFIG": cfg}
	fs, c, jobs := flags()
	if err := Parse(fs, []string{"--repo", "http://flag:7480"}, func(k string) string { return env[k] }, "walpush"); err != nil {
		t.Fatal(err)
	}
	if c.Repo != "http://flag:7480" || c.Archive != "fromenv" || *jobs != 7 {
		t.Fatalf("repo %q archive %q jobs %d", c.Repo, c.Archive, *jobs)
	}
}

func TestConfigFileMistakes(t *testing.T) {
	for name, text := range map[string]string{
		"unknown key in own section": "[walpush]\nbogus = 1\n",
		"binary setting at the top":  "jobs = 4\n",
		"no equals sign":             "repo http://x\n",
		"bad value for a known flag": "[walpush]\njobs = many\n",
		"misspelled section":         "[walpsuh]\njobs = 4\n",
		"a key set twice":            "[walpush]\njobs = 4\njobs = 5\n",
		"unterminated quote":         "repo = \"http://x\n",
	} {
		cfg := filepath.Join(t.TempDir(), "c.conf")
		os.WriteFile(cfg, []byte(text), 0o600)
		fs, _, _ := flags()
		err := Parse(fs, []string{"--config", cfg}, func(string) string { return "" }, "walpush")
		if !errors.Is(err, ErrUsage) {
			t.Errorf("%s: %v, want a usage error", name, err)
		} else if !strings.Contains(err.Error(), cfg) {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
}

func TestCheckAndExitCodes(t *testing.T) {
	for _, tc := range []struct {
		repo, archive string
		ok            bool
	}{
		{"http://h:7480", "main", true},
		{"file:///srv/wal", "billing", true},
		{"s3://b/p?endpoint=h:9000&tls=false", "main", true},
		{"ftp://h", "main", false},
		{"http://h:7480", "../x", false},
		{"s3://b/p?nonsense=1", "main", false},
		{"", "main", false},
	} {
		c := Common{Repo: tc.repo, Archive: tc.archive}
		err := c.Check()
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q, %q) = %v", tc.repo, tc.archive, err)
		}
		if err != nil && ExitCode(err) != ExitUsage {
			t.Errorf("Check(%q, %q): exit %d, want %d", tc.repo, tc.archive, ExitCode(err), ExitUsage)
		}
	}
}

// One cause, one code: a refused token is a configuration error (2) in
// every binary; "not found" and "try again" keep theirs.
func TestExitCodeOfEachKind(t *testing.T) {
	for err, want := range map[error]int{
		fmt.Errorf("put main/wal/x: %w: the token given is not one of this walstored's", errkind.ErrUnauthorized): ExitUsage,
		fmt.Errorf("get: %w: may not get in archive main", errkind.ErrForbidden):                                  ExitUsage,
		fmt.Errorf("x: %w", errkind.ErrNotFound):                                                                  ExitFailure,
		fmt.Errorf("x: %w", errkind.ErrConflict):                                                                  ExitFailure,
		fmt.Errorf("x: %w", errkind.ErrCorrupt):                                                                   ExitUnavailable,
		errors.New("connection refused"):                                                                          ExitUnavailable,
	} {
		if got := ExitCode(err); got != want {
			t.Errorf("ExitCode(%v) = %d, want %d", err, got, want)
		}
	}
}

// Comments: '#' or ';' at the start of a line or after white space, not
// inside double quotes; a value with a '#' glued to it keeps it.
func TestConfigComments(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.conf")
	os.WriteFile(cfg, []byte("repo = http://h:7480   # the storage host\narchive = \"a#b\" ; quoted\n[walpush]\n  ; indented comment\njobs = 3#4\n"), 0o600)
	fs, c, jobs := flags()
	err := Parse(fs, []string{"--config", cfg}, func(string) string { return "" }, "walpush")
	if err == nil || !strings.Contains(err.Error(), "jobs") {
		t.Fatalf("jobs = 3#4: %v, want an error (3#4 is not a number)", err)
	}
	os.WriteFile(cfg, []byte("repo = http://h:7480   # the storage host\narchive = \"a#b\" ; quoted\n[walpush]\n  ; indented comment\njobs = 3 # three\n"), 0o600)
	fs, c, jobs = flags()
	if err := Parse(fs, []string{"--config", cfg}, func(string) string { return "" }, "walpush"); err != nil {
		t.Fatal(err)
	}
	if c.Repo != "http://h:7480" || c.Archive != "a#b" || *jobs != 3 {
		t.Fatalf("repo %q archive %q jobs %d", c.Repo, c.Archive, *jobs)
	}
}

// One file serves every binary and subcommand: a setting of walfetch
// (prefetch) is no mistake for walfetch restore, which has no such flag.
func TestConfigSectionSharedBySubcommands(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.conf")
	os.WriteFile(cfg, []byte("archive = billing\n[walfetch]\nprefetch = 8\njobs = 2\n[walpush]\njobs = 4\n"), 0o600)
	restore := pflag.NewFlagSet("walfetch restore", pflag.ContinueOnError)
	c := &Common{}
	c.Bind(restore)
	jobs := restore.Int("jobs", 4, "")
	main := pflag.NewFlagSet("walfetch", pflag.ContinueOnError)
	(&Common{}).Bind(main)
	main.Int("prefetch", 8, "")
	if err := Parse(restore, []string{"--config", cfg}, func(string) string { return "" }, "walfetch", main); err != nil {
		t.Fatal(err)
	}
	if c.Archive != "billing" || *jobs != 2 {
		t.Fatalf("archive %q jobs %d", c.Archive, *jobs)
	}
}

// Secret files readable by every user are refused, at once.
func TestSecretFilesMustNotBeWorldReadable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	os.WriteFile(p, []byte("wst_x\n"), 0o644)
	c := Common{TokenFile: p}
	if _, err := c.Token(); err == nil || ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), "chmod o-r") {
		t.Fatalf("world-readable token file: %v", err)
	}
	os.Chmod(p, 0o640)
	if tok, err := c.Token(); err != nil || tok != "wst_x" {
		t.Fatalf("token: %q %v", tok, err)
	}
	os.WriteFile(p, nil, 0o600)
	if _, err := c.Token(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty token file: %v", err)
	}
	c.TokenFile = p + "-missing"
	if _, err := c.Token(); err == nil || ExitCode(err) != ExitUsage {
		t.Fatalf("missing token file: %v", err)
	}
}

// --repo given again, or on several repo lines of a config file, lists
// walstored instances in order; the command line replaces the file.
func TestRepoListFromFlagsAndConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "walstore.conf")
	os.WriteFile(cfg, []byte("repo = http://a:7480\nrepo = http://b:7480\n"), 0o600)
	getenv := func(string) string { return "" }
	fs, c, _ := flags()
	if err := Parse(fs, []string{"--config", cfg}, getenv, "walpush"); err != nil {
		t.Fatal(err)
	}
	if c.Repo != "http://a:7480,http://b:7480" {
		t.Fatalf("two repo lines: %q", c.Repo)
	}
	fs, c, _ = flags()
	if err := Parse(fs, []string{"--config", cfg, "--repo", "http://c:7480", "--repo", "http://d:7480"}, getenv, "walpush"); err != nil {
		t.Fatal(err)
	}
	if c.Repo != "http://c:7480,http://d:7480" {
		t.Fatalf("--repo twice over a config file: %q", c.Repo)
	}
	fs, c, _ = flags()
	if err := Parse(fs, []string{"--repo", "http://c:7480"}, func(k string) string { return map[string]string{"WALSTORE_REPO": "http://e:7480,http://f:7480"}[k] }, "walpush"); err != nil {
		t.Fatal(err)
	}
	if c.Repo != "http://c:7480" {
		t.Fatalf("--repo over WALSTORE_REPO: %q", c.Repo)
	}
}
