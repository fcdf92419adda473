package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"github.com/walstore/walstore/base/conffile"
)

// SectionKeys are the settings of the clients' sections besides the
// shared ones: each client checks both sections whatever it is, so that a
// mistake under [walfetch] fails walpush at once rather than a restore
// later. (walstored checks its own section.) tests/ holds them to the
// binaries' flags.
var SectionKeys = map[string][]string{
	"walpush": {"timeout", "jobs", "force", "pgdata", "agent-socket"},
	"walfetch": {"timeout", "prefetch", "wait", "pgdata",
		"backup", "target-time", "target-lsn", "target-xid", "target-name", "target-action", "target-timeline",
		"archive-mode", "strip-commands", "config-path-mapping", "standby", "owner", "delta", "dry-run", "jobs", "tablespace-mapping", "json"},
}

// sharedKeys may appear at the top of a config file, before any section.
var sharedKeys = map[string]bool{"repo": true, "archive": true, "token-file": true, "cacert": true, "client-cert": true, "client-key": true, "verbose": true,
	"encryption-key-file": true, "encryption-passphrase-file": true, "decryption-key-files": true}

// Parse parses args into fs and fills every flag not given on the command
// line from the environment and then from the config file. section names
// the binary's own part of the config file ([walpush], ...); also are the
// flag sets of the binary's other subcommands, whose settings the section
// may hold too (walfetch's prefetch is no mistake in walfetch restore).
//
// The config file: "key = value" lines; lines before any [section] hold
// shared settings only; a section is [walpush], [walfetch] or [walstored]
// (any other is an error, so is an unknown key). A '#' or ';' starts a
// comment at the start of a line or after white space; a value in double
// quotes keeps them. A key given twice is an error, except for settings
// that take a list (--store), which collect every line.
func Parse(fs *pflag.FlagSet, args []string, getenv func(string) string, section string, also ...*pflag.FlagSet) error {
	fs.SortFlags = false
	fs.SetOutput(discard{})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	var file map[string][]string
	cfgPath := ""
	if f := fs.Lookup("config"); f != nil {
		cfgPath = f.Value.String()
		if cfgPath == "" {
			cfgPath = getenv("WALSTORE_CONFIG")
		}
	}
	if cfgPath != "" {
		var err error
		if file, err = readConfig(cfgPath, section, fs, also); err != nil {
			return fmt.Errorf("%w: %v", ErrUsage, err)
		}
	}
	var ferr error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || ferr != nil || f.Name == "config" {
			return
		}
		env := "WALSTORE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		var values []string
		src := env
		if v := getenv(env); v != "" {
			values = []string{v}
			if f.Value.Type() == "stringArray" {
				values = strings.Fields(v) // several stores: space-separated
			}
		} else {
			values, src = file[f.Name], cfgPath
		}
		for _, one := range values {
			if err := fs.Set(f.Name, one); err != nil {
				ferr = fmt.Errorf("%w: %s: --%s=%q: %v", ErrUsage, src, f.Name, one, err)
			}
		}
	})
	return ferr
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// readConfig reads the file's shared settings and the section's.
func readConfig(path, section string, fs *pflag.FlagSet, also []*pflag.FlagSet) (map[string][]string, error) {
	lines, err := conffile.Read(path)
	if err != nil {
		return nil, err
	}
	known := func(k string) (inThis, elsewhere bool) {
		if k == "config" {
			return false, false
		}
		if fs.Lookup(k) != nil {
			return true, true
		}
		for _, o := range also {
			if o.Lookup(k) != nil {
				return false, true
			}
		}
		return false, false
	}
	out := map[string][]string{}
	for _, l := range lines {
		switch {
		case l.Section == "" && !sharedKeys[l.Key]:
			if near := nearest(l.Key, sectionOrShared("")); near != "" {
				return nil, fmt.Errorf("%s:%d: unknown setting %q; did you mean %q?", path, l.N, l.Key, near)
			}
			return nil, fmt.Errorf("%s:%d: %q is not a shared setting; put it under [%s] or the section of the binary it is for", path, l.N, l.Key, section)
		case l.Section != "" && l.Section != section:
			if keys, ok := SectionKeys[l.Section]; ok && !slices.Contains(keys, l.Key) && !sharedKeys[l.Key] && l.Key != "verbose" {
				msg := fmt.Sprintf("%s:%d: unknown setting %q under [%s]", path, l.N, l.Key, l.Section)
				if near := nearest(l.Key, sectionOrShared(l.Section)); near != "" {
					msg += fmt.Sprintf("; did you mean %q?", near)
				}
				return nil, errors.New(msg)
			}
			continue
		}
		inThis, elsewhere := known(l.Key)
		switch {
		case !elsewhere:
			if near := nearest(l.Key, sectionOrShared(section)); near != "" {
				return nil, fmt.Errorf("%s:%d: unknown setting %q for %s; did you mean %q?", path, l.N, l.Key, section, near)
			}
			return nil, fmt.Errorf("%s:%d: unknown setting %q for %s", path, l.N, l.Key, section)
		case !inThis:
			continue // another subcommand's setting
		}
		if len(out[l.Key]) > 0 && fs.Lookup(l.Key).Value.Type() != "stringArray" {
			return nil, fmt.Errorf("%s:%d: %q is set twice", path, l.N, l.Key)
		}
		out[l.Key] = append(out[l.Key], l.Value)
	}
	return out, nil
}

func sectionOrShared(section string) []string {
	out := append([]string{}, SectionKeys[section]...)
	for k := range sharedKeys {
		out = append(out, k)
	}
	return out
}

// nearest is the known key a mistaken one most likely meant: one that
// starts the other ("repository" for repo) or is within two edits.
func nearest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		d := editDistance(key, k)
		if strings.HasPrefix(key, k) || strings.HasPrefix(k, key) {
			d = min(d, 1)
		}
		if d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev = cur
	}
	return prev[len(b)]
}
