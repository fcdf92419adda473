package backupset

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Lines as guc-file.l reads them: a tab or nothing between name and
// value, quotes, case, comments, qualified names, includes.
func TestParsePGConfLine(t *testing.T) {
	for line, want := range map[string]pgConfLine{
		"recovery_end_command\t'touch /tmp/x'":   {"recovery_end_command", "touch /tmp/x"},
		"  Recovery_End_Command='a''b' # c":      {"recovery_end_command", "a'b"},
		"session_preload_libraries = pg_evil":    {"session_preload_libraries", "pg_evil"},
		"include 'evil.conf'":                    {"include", "evil.conf"},
		"include_dir\t'conf.d'":                  {"include_dir", "conf.d"},
		"myext.setting = 1":                      {"myext.setting", "1"},
		"# archive_command = 'x'":                {},
		"":                                       {},
		"\t\r":                                   {},
		"hba_file='/etc/postgresql/pg_hba.conf'": {"hba_file", "/etc/postgresql/pg_hba.conf"},
	} {
		if got := parsePGConfLine(line); got != want {
			t.Errorf("%q: %+v, want %+v", line, got, want)
		}
	}
	for _, k := range []string{"archive_command", "restore_command", "ssl_passphrase_command", "shared_preload_libraries", "dynamic_library_path", "archive_library", "include_if_exists"} {
		if !runsSomething(k) {
			t.Errorf("%s runs nothing?", k)
		}
	}
	if runsSomething("work_mem") || runsSomething("command_timeout_ms") {
		t.Error("a plain setting taken for a command")
	}
}

func TestStripAndMapTheRestoredConfiguration(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "postgresql.conf"), []byte("port = 5432\nhba_file = '/srv/patroni/pg_hba.conf'\nrecovery_end_command = 'touch /tmp/m1'\ninclude 'evil.conf'\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "postgresql.auto.conf"), []byte("recovery_end_command\t'touch /tmp/m2'\nSESSION_PRELOAD_LIBRARIES = 'pg_evil/evil.so'\n"), 0o600)
	found, err := inspectConf(dir)
	if err != nil || len(found) != 5 {
		t.Fatalf("inspect: %v %v", found, err)
	}
	changed, err := rewriteConf(dir, true, map[string]string{"/srv/patroni": dir})
	if err != nil || len(changed) != 5 {
		t.Fatalf("rewrite: %v %v", changed, err)
	}
	found, _ = inspectConf(dir)
	if len(found) != 0 {
		t.Fatalf("still carried after the rewrite: %v", found)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "postgresql.conf"))
	if !strings.Contains(string(b), "hba_file = '"+dir+"/pg_hba.conf'") || !strings.Contains(string(b), "port = 5432") {
		t.Fatalf("postgresql.conf:\n%s", b)
	}
}
