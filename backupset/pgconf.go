package backupset

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Reading a PostgreSQL configuration file line the way guc-file.l does:
// leading white space (space, tab, CR), a name (letters, digits, '_',
// bytes ≥ 0x80, and '.' in a qualified name), white space, an optional
// '=', white space, the value (quoted with '...', where '' is a quote, or
// a bare word), then an optional comment. Names are case-insensitive.
// Lines that include others (include, include_if_exists, include_dir) are
// names too.

// pgConfLine is one setting line.
type pgConfLine struct {
	Key   string // lower case; "" for a blank or comment line
	Value string // unquoted
}

func isConfSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v' }

func isConfNameByte(c byte) bool {
	return c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// parsePGConfLine reads one line.
func parsePGConfLine(line string) pgConfLine {
	i := 0
	for i < len(line) && isConfSpace(line[i]) {
		i++
	}
	j := i
	for j < len(line) && isConfNameByte(line[j]) {
		j++
	}
	if j == i {
		return pgConfLine{}
	}
	out := pgConfLine{Key: strings.ToLower(line[i:j])}
	for j < len(line) && isConfSpace(line[j]) {
		j++
	}
	if j < len(line) && line[j] == '=' {
		j++
	}
	for j < len(line) && isConfSpace(line[j]) {
		j++
	}
	rest := line[j:]
	if strings.HasPrefix(rest, "'") {
		var b strings.Builder
		for k := 1; k < len(rest); k++ {
			if rest[k] == '\'' {
				if k+1 < len(rest) && rest[k+1] == '\'' {
					b.WriteByte('\'')
					k++
					continue
				}
				break
			}
			if rest[k] == '\\' && k+1 < len(rest) {
				k++
			}
			b.WriteByte(rest[k])
		}
		out.Value = b.String()
		return out
	}
	end := 0
	for end < len(rest) && !isConfSpace(rest[end]) && rest[end] != '#' {
		end++
	}
	out.Value = rest[:end]
	return out
}

// runsSomething reports whether setting key runs a command or loads code:
// what a restored copy (and never a drill) must not take from a database
// host unknowingly.
func runsSomething(key string) bool {
	switch key {
	case "shared_preload_libraries", "session_preload_libraries", "local_preload_libraries",
		"dynamic_library_path", "archive_library", "include", "include_if_exists", "include_dir":
		return true
	}
	return strings.HasSuffix(key, "_command")
}

// pathSettings name files or directories of the host the server runs on.
var pathSettings = map[string]bool{
	"hba_file": true, "ident_file": true, "log_directory": true, "external_pid_file": true,
	"ssl_cert_file": true, "ssl_key_file": true, "ssl_ca_file": true, "ssl_crl_file": true, "ssl_crl_dir": true,
	"ssl_dh_params_file": true, "unix_socket_directories": true, "stats_temp_directory": true,
	"data_directory": true, "config_file": true, "krb_server_keyfile": true,
}

// carried is one setting of a restored copy's configuration worth a
// warning: it runs something, or names a path of another host.
type carried struct {
	File  string // postgresql.conf or postgresql.auto.conf
	Line  int
	Key   string
	Value string
	Runs  bool // runs a command or loads code
}

func (c carried) String() string {
	if c.Runs {
		return fmt.Sprintf("%s line %d: %s = '%s' runs a command or loads code on this host (--strip-commands comments it out)", c.File, c.Line, c.Key, c.Value)
	}
	return fmt.Sprintf("%s line %d: %s = '%s' names a path that does not exist on this host (--config-path-mapping OLD=NEW)", c.File, c.Line, c.Key, c.Value)
}

// confFiles are the configuration files of a data directory restore
// inspects.
var confFiles = []string{"postgresql.conf", "postgresql.auto.conf"}

// inspectConf lists what pgdata's configuration carries, after the lines
// restore itself wrote (restoreMark block) are left out.
func inspectConf(pgdata string) ([]carried, error) {
	var out []carried
	for _, name := range confFiles {
		b, err := os.ReadFile(filepath.Join(pgdata, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		inBlock := false
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), restoreMark) {
				inBlock = true
				continue
			}
			if inBlock {
				if strings.TrimSpace(line) == "" {
					inBlock = false
				}
				continue
			}
			l := parsePGConfLine(line)
			switch {
			case l.Key == "":
			case runsSomething(l.Key):
				out = append(out, carried{name, i + 1, l.Key, l.Value, true})
			case pathSettings[l.Key] && missingPath(pgdata, l.Value):
				out = append(out, carried{name, i + 1, l.Key, l.Value, false})
			}
		}
	}
	return out, nil
}

// missingPath: an absolute path (or, for a list, one of them) outside
// pgdata that does not exist here.
func missingPath(pgdata, v string) bool {
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if !filepath.IsAbs(p) || strings.HasPrefix(filepath.Clean(p)+"/", filepath.Clean(pgdata)+"/") {
			continue
		}
		if _, err := os.Stat(p); os.IsNotExist(err) {
			return true
		}
	}
	return false
}

// rewriteConf applies --strip-commands (a setting that runs something is
// commented out) and --config-path-mapping (a path setting's value that
// starts with OLD starts with NEW instead) to pgdata's configuration
// files, outside restore's own block; it returns what it changed.
func rewriteConf(pgdata string, strip bool, mapping map[string]string) ([]string, error) {
	var changed []string
	for _, name := range confFiles {
		p := filepath.Join(pgdata, name)
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		lines := strings.Split(string(b), "\n")
		inBlock, dirty := false, false
		for i, line := range lines {
			if strings.HasPrefix(strings.TrimSpace(line), restoreMark) {
				inBlock = true
				continue
			}
			if inBlock {
				inBlock = strings.TrimSpace(line) != ""
				continue
			}
			l := parsePGConfLine(line)
			switch {
			case l.Key == "":
			case strip && runsSomething(l.Key):
				lines[i] = "# stripped by walfetch restore --strip-commands: " + line
				changed = append(changed, fmt.Sprintf("%s line %d: %s commented out", name, i+1, l.Key))
				dirty = true
			case pathSettings[l.Key]:
				for old, nw := range mapping {
					if strings.HasPrefix(l.Value, old) {
						v := nw + strings.TrimPrefix(l.Value, old)
						lines[i] = fmt.Sprintf("%s = '%s'\t# was '%s' (walfetch restore --config-path-mapping)", l.Key, strings.ReplaceAll(v, "'", "''"), strings.ReplaceAll(l.Value, "'", "''"))
						changed = append(changed, fmt.Sprintf("%s line %d: %s = '%s' (was '%s')", name, i+1, l.Key, v, l.Value))
						dirty = true
						break
					}
				}
			}
		}
		if !dirty {
			continue
		}
		tmp := p + ".walstore-tmp"
		if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, p); err != nil {
			return nil, err
		}
	}
	return changed, nil
}
