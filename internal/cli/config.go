package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// Sections of a config file, one per binary.
var sections = map[string]bool{"walpush": true, "walfetch": true, "walstored": true}

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
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %v", unwrapPath(err))
	}
	defer f.Close()
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
	cur := ""
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s, err := stripComment(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		if s == "" {
			continue
		}
		if s[0] == '[' {
			if s[len(s)-1] != ']' {
				return nil, fmt.Errorf("%s:%d: want [section]", path, line)
			}
			cur = strings.TrimSpace(s[1 : len(s)-1])
			if !sections[cur] {
				return nil, fmt.Errorf("%s:%d: unknown section [%s]; the sections are [walpush], [walfetch] and [walstored]", path, line, cur)
			}
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want key = value", path, line)
		}
		k, v = strings.TrimSpace(k), unquote(strings.TrimSpace(v))
		switch {
		case cur == "" && !sharedKeys[k]:
			return nil, fmt.Errorf("%s:%d: %q is not a shared setting; put it under [%s] or the section of the binary it is for", path, line, k, section)
		case cur != "" && cur != section:
			continue
		}
		inThis, elsewhere := known(k)
		switch {
		case !elsewhere:
			return nil, fmt.Errorf("%s:%d: unknown setting %q for %s", path, line, k, section)
		case !inThis:
			continue // another subcommand's setting
		}
		if len(out[k]) > 0 && fs.Lookup(k).Value.Type() != "stringArray" {
			return nil, fmt.Errorf("%s:%d: %q is set twice", path, line, k)
		}
		out[k] = append(out[k], v)
	}
	return out, sc.Err()
}

// stripComment removes a comment: '#' or ';' at the start of the line or
// after white space, outside double quotes.
func stripComment(line string) (string, error) {
	inQuote := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '"':
			inQuote = !inQuote
		case (c == '#' || c == ';') && !inQuote && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimSpace(line[:i]), nil
		}
	}
	if inQuote {
		return "", errors.New("unterminated double quote")
	}
	return strings.TrimSpace(line), nil
}

func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}
