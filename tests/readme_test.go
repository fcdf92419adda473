package tests

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal/waltest"
)

// readmeBlocks returns the fenced code blocks of README.md, each as its
// lines.
func readmeBlocks(t *testing.T) [][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks [][]string
	var cur []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			if in {
				blocks = append(blocks, cur)
			}
			in, cur = !in, nil
			continue
		}
		if in {
			cur = append(cur, line)
		}
	}
	return blocks
}

// readmeBlock is the README's code block whose first line is first.
func readmeBlock(t *testing.T, first string) []string {
	t.Helper()
	for _, b := range readmeBlocks(t) {
		if len(b) > 0 && b[0] == first {
			return b
		}
	}
	t.Fatalf("README.md has no code block starting %q", first)
	return nil
}

// heredoc is the body of "cat > path <<'EOF2'" in a README block.
func heredoc(t *testing.T, block []string, path string) []string {
	t.Helper()
	for i, l := range block {
		if strings.HasPrefix(l, "cat > "+path+" <<") {
			var body []string
			for _, b := range block[i+1:] {
				if b == "EOF2" {
					return body
				}
				body = append(body, b)
			}
		}
	}
	t.Fatalf("README block has no here-document for %s", path)
	return nil
}

// The README's configuration, as printed, drives archive_command,
// walstored backup (whose archive_command check must follow --config),
// walfetch restore and the restore_command it writes, and the backup and
// retention units' command lines with the README's environment files.
// Only the host name, the /etc/walstore directory and the paths of the
// binaries are replaced.
func TestREADMEConfiguration(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	etc := testenv.PostgresDir(t, dir, "etc") + "/"
	repoDir := filepath.Join(dir, "repo")
	ca := testenv.NewCA(t, "walstore-readme")
	cert, key := ca.Issue(t, "walstored", true)
	push, pushLine := mintToken(t, "db1", "push", "billing")
	adminTok, adminLine := mintToken(t, "ops", "admin", "*")
	// First steps, 3: the backup token, minted as the README says.
	readme, _ := os.ReadFile(filepath.Join(testenv.Root(), "README.md"))
	if !strings.Contains(strings.Join(strings.Fields(string(readme)), " "), "`walstored token --name db1-backup --scope backup --archives billing`") {
		t.Fatal("the README's first steps no longer mint the backup token this test mints")
	}
	backupTok, backupLine := mintToken(t, "db1-backup", "backup", "billing")
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte(pushLine+"\n"+adminLine+"\n"+backupLine+"\n"), 0o600)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir, "--tokens", tokens, "--tls-cert", cert, "--tls-key", key)
	if !strings.HasPrefix(ws.URL, "https://") {
		t.Fatalf("walstored URL %s", ws.URL)
	}
	os.WriteFile(etc+"billing.token", []byte(push+"\n"), 0o600)
	testenv.Chown(t, etc+"billing.token")
	b, _ := os.ReadFile(ca.CertFile)
	os.WriteFile(etc+"ca.pem", b, 0o644)
	adminFile := tokenFile(t, dir, "admin", adminTok)

	local := func(lines []string) []string {
		var out []string
		for _, l := range lines {
			l = strings.ReplaceAll(l, "https://storage.example.com:7480", ws.URL)
			l = strings.ReplaceAll(l, "/etc/walstore/", etc)
			l = strings.ReplaceAll(l, "'walpush ", "'"+bins.WalPush+" ")
			l = strings.ReplaceAll(l, "'walfetch ", "'"+bins.WalFetch+" ")
			out = append(out, l)
		}
		return out
	}
	conf := local(readmeBlock(t, "# /etc/walstore/walstore.conf (readable by postgres)"))
	confFile := etc + "walstore.conf"
	os.WriteFile(confFile, []byte(strings.Join(conf, "\n")+"\n"), 0o644)
	pgconf := local(readmeBlock(t, "# postgresql.conf"))
	if !strings.Contains(strings.Join(pgconf, "\n"), "archive_command = '"+bins.WalPush+" --config "+confFile+" %p'") {
		t.Fatalf("the README's postgresql.conf block changed shape:\n%s", strings.Join(pgconf, "\n"))
	}

	// archive_command
	p := testenv.NewCluster(t, dir, "db1", testenv.ClusterOptions{WalSegSizeMB: 1, Conf: pgconf})
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 1000)
	archivedTo(t, p)
	if last := p.QueryString("SELECT coalesce(last_failed_wal, '') FROM pg_stat_archiver"); last != "" {
		t.Fatalf("archiving with the README's configuration failed on %s:\n%s", last, p.Log())
	}

	// walstored backup, as on the storage host with an admin token: its
	// archive_command check reads the archive from the config file.
	adm := repo{url: ws.URL, extra: []string{"--token-file", adminFile, "--cacert", ca.CertFile}}
	res := testenv.Run(t, dir, nil, bins.WalStored, append([]string{"backup", "--repo", adm.url, "--archive", "billing", "--pg", p.ConnString()}, adm.extra...)...)
	if res.Code != 0 {
		t.Fatalf("walstored backup with the README's archive_command: exit %d\n%s", res.Code, res.Stderr)
	}
	insertBatch(p, 1, 1000)
	archivedTo(t, p)

	// First steps, 2 to 4, as the README gives them: check the chain;
	// a backup on the database host with the backup token (--pgdata,
	// the local reader); a drill from the storage host.
	if res := testenv.Run(t, dir, nil, bins.WalStored, append([]string{"check", "--repo", adm.url, "--archive", "billing", "--pg", p.ConnString()}, adm.extra...)...); res.Code != 0 {
		t.Fatalf("walstored check (first steps, 2): exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	dbHost := []string{"--token-file", tokenFile(t, dir, "db1-backup", backupTok), "--cacert", ca.CertFile}
	if res := testenv.Run(t, dir, nil, bins.WalStored, append([]string{"backup", "--repo", ws.URL, "--archive", "billing", "--pg", p.ConnString(), "--pgdata", p.Dir}, dbHost...)...); res.Code != 0 {
		t.Fatalf("walstored backup --pgdata with the backup token (first steps, 3): exit %d\n%s", res.Code, res.Stderr)
	}
	if res := testenv.Run(t, dir, nil, bins.WalStored, append([]string{"drill", "--repo", adm.url, "--archive", "billing"}, adm.extra...)...); res.Code != 0 || !strings.Contains(res.Stdout, "passed") {
		t.Fatalf("walstored drill (first steps, 4): exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	rows := p.QueryInt("SELECT count(*) FROM ledger")

	// The backup and retention units' command lines, with the README's
	// environment files (the storage host reads the file store itself).
	units := readmeBlock(t, "install -m 755 bin/walstored bin/walpush bin/walfetch /usr/local/bin/")
	unitEnv := func(name string) []string {
		var env []string
		for _, l := range heredoc(t, units, "/etc/walstore/"+name) {
			l = strings.ReplaceAll(l, "file:///var/lib/walstore/data", "file://"+repoDir)
			l = strings.ReplaceAll(l, "host=db1 user=walstore_backup", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres", p.Port))
			env = append(env, l)
		}
		return env
	}
	for _, u := range []struct{ unit, env string }{{"walstore-backup@.service", "backup-billing.env"}, {"walstore-retain@.service", "retain-billing.env"}} {
		env := unitEnv(u.env)
		text, err := os.ReadFile(filepath.Join(testenv.Root(), "deploy", "systemd", u.unit))
		if err != nil {
			t.Fatal(err)
		}
		var argv []string
		for _, l := range strings.Split(string(text), "\n") {
			if cmd, ok := strings.CutPrefix(l, "ExecStart="); ok {
				cmd = strings.ReplaceAll(cmd, "%i", "billing")
				cmd = os.Expand(cmd, func(k string) string {
					for _, kv := range env {
						if v, ok := strings.CutPrefix(kv, k+"="); ok {
							return v
						}
					}
					t.Fatalf("%s uses ${%s}, which %s does not set", u.unit, k, u.env)
					return ""
				})
				argv = strings.Fields(cmd)
			}
		}
		res := testenv.Run(t, dir, env, bins.WalStored, argv[1:]...)
		if res.Code != 0 {
			t.Fatalf("%s with the README's %s: exit %d\n%s%s", u.unit, u.env, res.Code, res.Stdout, res.Stderr)
		}
	}

	// walfetch restore with the config file, as postgres on a database
	// server: the restore_command it writes names the config file.
	target := filepath.Join(testenv.PostgresDir(t, dir, "restore-parent"), "data")
	cmd := testenv.AsPostgres(bins.WalFetch, "restore", "--config", confFile, "--pgdata", target)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("walfetch restore --config with the README's file: %v\n%s", err, out)
	}
	auto, _ := os.ReadFile(filepath.Join(target, "postgresql.auto.conf"))
	if !strings.Contains(string(auto), "--config "+confFile) || strings.Contains(string(auto), ws.URL) {
		t.Fatalf("the restore_command does not refer to the config file:\n%s", auto)
	}
	p.Stop()
	c := testenv.OpenCluster(t, target)
	c.Start()
	c.WaitRecovered(2 * time.Minute)
	if got := c.QueryInt("SELECT count(*) FROM ledger"); got != rows {
		t.Fatalf("restored with the README's configuration: %d rows, want %d", got, rows)
	}
	// The restored cluster archives through the same file, onto timeline 2.
	insertBatch(c, 2, 100)
	archivedTo(t, c)
	if n := c.QueryInt("SELECT failed_count FROM pg_stat_archiver"); n != 0 {
		t.Fatalf("the restored cluster failed to archive %d times:\n%s", n, c.Log())
	}
}

// The README's first command: walstored serve with no --store makes its
// embedded default, ./walstore-data, a repository, and serves it; a push
// lands there, a fetch gets it back, and a restart serves the same
// store.
func TestQuickStartDefaultStore(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	bins := testenv.Binaries(t)
	segs, err := waltest.WriteSegments(t.TempDir(), waltest.Name("000000010000000000000002"), 1, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	ws := testenv.StartWalstoredIn(t, dir, nil)
	if res := testenv.Run(t, dir, nil, bins.WalPush, "--repo", ws.URL, "--archive", "main", "--jobs", "1", segs[0]); res.Code != 0 {
		t.Fatalf("walpush to the default store: exit %d %s", res.Code, res.Stderr)
	}
	for _, p := range []string{"walstore-data", "walstore-data/main/wal"} {
		if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || !fi.IsDir() {
			t.Fatalf("%s in the working directory: %v", p, err)
		}
	}
	ws.Stop(t)
	ws = testenv.StartWalstoredIn(t, dir, nil)
	dest := filepath.Join(dir, "fetched")
	if res := testenv.Run(t, dir, nil, bins.WalFetch, "--repo", ws.URL, "--archive", "main", "000000010000000000000002", dest); res.Code != 0 {
		t.Fatalf("walfetch after a restart: exit %d %s", res.Code, res.Stderr)
	}
	if fileSHA(t, dest) != fileSHA(t, segs[0]) {
		t.Fatal("the fetched segment is not the pushed one")
	}
}
