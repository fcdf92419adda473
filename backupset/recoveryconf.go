package backupset

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Settings an earlier recovery leaves in postgresql.auto.conf, which a
// base backup then carries into every cluster restored from it: a PITR's
// recovery_target_time turning a later standby into a self-promoting
// primary, a restore_command naming an old host.
var recoveryKeys = map[string]bool{
	"restore_command": true, "recovery_end_command": true, "archive_cleanup_command": true,
	"primary_conninfo": true, "primary_slot_name": true,
	"recovery_target": true, "recovery_target_lsn": true, "recovery_target_name": true, "recovery_target_time": true,
	"recovery_target_xid": true, "recovery_target_inclusive": true, "recovery_target_timeline": true, "recovery_target_action": true,
}

// restoreMark starts the block a restore appends to postgresql.auto.conf.
const restoreMark = "# added by walfetch restore"

// confKey returns the setting a postgresql.conf line sets, or "" (read
// as PostgreSQL reads it: a tab between name and value is a separator
// too).
func confKey(line string) string { return parsePGConfLine(line).Key }

// cleanAutoConf removes from dir's postgresql.auto.conf every recovery
// setting and every block an earlier walfetch restore appended, and
// returns the lines it removed.
func cleanAutoConf(dir string) ([]string, error) {
	p := filepath.Join(dir, "postgresql.auto.conf")
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var kept bytes.Buffer
	var removed []string
	inBlock := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), restoreMark):
			inBlock = true
			continue
		case inBlock && strings.TrimSpace(line) == "":
			inBlock = false
		case inBlock || recoveryKeys[confKey(line)]:
			removed = append(removed, strings.TrimSpace(line))
			continue
		}
		kept.WriteString(line)
		kept.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(removed) == 0 {
		return nil, nil
	}
	tmp := p + ".walstore-tmp"
	if err := os.WriteFile(tmp, kept.Bytes(), 0o600); err != nil {
		return nil, err
	}
	return removed, os.Rename(tmp, p)
}

// confWarnings names the recovery settings postgresql.conf itself holds:
// walfetch restore does not edit that file, but they would win over
// nothing and act on the restored cluster.
func confWarnings(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "postgresql.conf"))
	if err != nil {
		return nil
	}
	var out []string
	for i, line := range strings.Split(string(b), "\n") {
		if recoveryKeys[confKey(line)] {
			out = append(out, fmt.Sprintf("postgresql.conf line %d sets %s: the restored cluster would use it unless postgresql.auto.conf (written by this restore) overrides it; remove it", i+1, confKey(line)))
		}
	}
	return out
}
