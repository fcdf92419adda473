// Package conffile reads walstore's config files: "key = value" lines,
// shared settings before any [section], a section per binary ([walpush],
// [walfetch], [walstored]). A '#' or ';' starts a comment at the start of
// a line or after white space; a value in double quotes keeps them.
package conffile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Sections are the sections a file may have.
var Sections = map[string]bool{"walpush": true, "walfetch": true, "walstored": true}

// Line is one setting of a file.
type Line struct {
	Section string // "" for the shared part
	Key     string
	Value   string
	N       int // line number
}

// Read parses a config file; errors name the file and line.
func Read(path string) ([]Line, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("config file %s: %v", path, err)
	}
	defer f.Close()
	return Parse(path, f)
}

// Parse parses a config file's contents.
func Parse(path string, r io.Reader) ([]Line, error) {
	var out []Line
	cur := ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		s, err := stripComment(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		if s == "" {
			continue
		}
		if s[0] == '[' {
			if s[len(s)-1] != ']' {
				return nil, fmt.Errorf("%s:%d: want [section]", path, n)
			}
			cur = strings.TrimSpace(s[1 : len(s)-1])
			if !Sections[cur] {
				return nil, fmt.Errorf("%s:%d: unknown section [%s]; the sections are [walpush], [walfetch] and [walstored]", path, n, cur)
			}
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want key = value", path, n)
		}
		out = append(out, Line{Section: cur, Key: strings.TrimSpace(k), Value: unquote(strings.TrimSpace(v)), N: n})
	}
	return out, sc.Err()
}

// Value returns the value of key for section (its own line, else the
// shared one), and whether there is one.
func Value(lines []Line, section, key string) (string, bool) {
	v, found := "", false
	for _, l := range lines {
		if l.Key != key || l.Section != "" && l.Section != section {
			continue
		}
		if l.Section == section || !found {
			v, found = l.Value, true
		}
	}
	return v, found
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
