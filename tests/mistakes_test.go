package tests

import (
	"encoding/json"
	"fmt"
	"github.com/walstore/walstore/internal/cli"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal/waltest"
)

// Operator mistakes (issue 14): each fails with a non-zero exit code and
// a message naming the cause; permanent errors fail within a second.

// segmentFiles writes n synthetic 1 MiB segments of one system into a
// fresh directory.
func segmentFiles(t *testing.T, n int) []string {
	t.Helper()
	segs, err := waltest.WriteSegments(testenv.Dir(t), waltest.Name("000000010000000000000001"), n, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// mustFail asserts a failed run (with exit code code; any failure for -1)
// whose stderr names every one of want, in one line.
func mustFail(t *testing.T, what string, res testenv.Result, code int, want ...string) {
	t.Helper()
	if res.Code != code && (code != -1 || res.Code == 0) {
		t.Errorf("%s: exit %d, want %d: %s", what, res.Code, code, res.Stderr)
		return
	}
	for _, w := range want {
		if !strings.Contains(res.Stderr, w) {
			t.Errorf("%s: stderr does not name %q: %s", what, w, res.Stderr)
		}
	}
	if n := strings.Count(strings.TrimSpace(res.Stderr), "\n"); n > 0 {
		t.Errorf("%s: %d lines of error, want one: %s", what, n+1, res.Stderr)
	}
}

// Typos in archive names, repository paths and config files exit non-zero
// and say what is wrong; an explicit flag accepts an empty archive.
func TestTyposFailLoudly(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir)
	segs := segmentFiles(t, 1)
	if res := testenv.Run(t, dir, nil, bins.WalPush, "--repo", ws.URL, "--archive", "main", segs[0]); res.Code != 0 {
		t.Fatalf("push: %s", res.Stderr)
	}
	for _, repoURL := range []string{ws.URL, "file://" + repoDir} {
		for _, cmd := range [][]string{{"verify"}, {"list"}, {"retain", "--keep-last", "1"}, {"drill"}} {
			args := append(append([]string{}, cmd...), "--repo", repoURL, "--archive", "mian")
			mustFail(t, strings.Join(args, " "), testenv.Run(t, dir, nil, bins.WalStored, args...), 1, "archive mian does not exist", "its archives: main")
			if cmd[0] == "drill" {
				continue
			}
			if res := testenv.Run(t, dir, nil, bins.WalStored, append(args, "--allow-empty")...); res.Code != 0 {
				t.Errorf("%v --allow-empty: exit %d %s", args, res.Code, res.Stderr)
			}
		}
	}
	mustFail(t, "list of a path that does not exist", testenv.Run(t, dir, nil, bins.WalStored, "list", "--repo", "file://"+dir+"/wrong/path"),
		2, "does not exist", "walstored init")

	// Clients never make a repository: a path that is not one is refused
	// and nothing is created.
	mustFail(t, "walpush into a path that does not exist", testenv.Run(t, dir, nil, bins.WalPush, "--repo", "file://"+dir+"/a/b/c", segs[0]),
		2, "does not exist", "is the share mounted")
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Error("walpush created directories")
	}
	plain := filepath.Join(dir, "plain")
	os.Mkdir(plain, 0o755)
	mustFail(t, "walpush into a directory that is no repository", testenv.Run(t, dir, nil, bins.WalPush, "--repo", "file://"+plain, segs[0]),
		2, "not a walstore repository", "walstored init")
	if ents, _ := os.ReadDir(plain); len(ents) != 0 {
		t.Errorf("walpush wrote into a directory that is no repository: %v", ents)
	}

	// Config files: a misspelled section is an error; a comment after a
	// value is a comment.
	conf := filepath.Join(dir, "typo.conf")
	os.WriteFile(conf, []byte("repo = "+ws.URL+"\n[walpsuh]\njobs = 4\n"), 0o644)
	mustFail(t, "misspelled section", testenv.Run(t, dir, nil, bins.WalPush, "--config", conf, segs[0]), 2, "unknown section [walpsuh]", "typo.conf:2")
	os.WriteFile(conf, []byte("repo = "+ws.URL+"   # the storage host\narchive = billing # the billing cluster\n"), 0o644)
	if res := testenv.Run(t, dir, nil, bins.WalPush, "--config", conf, segs[0]); res.Code != 0 {
		t.Fatalf("config with comments after values: exit %d %s", res.Code, res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(repoDir, "billing", "wal", filepath.Base(segs[0]))); err != nil {
		t.Errorf("the segment is not in archive billing: %v", err)
	}
	os.WriteFile(conf, []byte("repo = "+ws.URL+"\narchive = billing\narchive = crm\n"), 0o644)
	mustFail(t, "a setting given twice", testenv.Run(t, dir, nil, bins.WalPush, "--config", conf, segs[0]), 2, "archive", "twice")
}

// Permanent errors fail at once, in one line, without retries.
func TestPermanentErrorsFailAtOnce(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	segs := segmentFiles(t, 1)
	tok, line := mintToken(t, "db1", "push", "main")
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte(line+"\n"), 0o600)
	repoDir := filepath.Join(dir, "repo")
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir, "--tokens", tokens)
	good := tokenFile(t, dir, "good", tok)
	empty := tokenFile(t, dir, "empty", "")
	os.WriteFile(empty, nil, 0o600)
	open := tokenFile(t, dir, "open", tok)
	os.Chmod(open, 0o644)
	wrong := tokenFile(t, dir, "wrong", "wst_"+strings.Repeat("x", 43))
	push := func(extra ...string) testenv.Result {
		return testenv.Run(t, dir, nil, bins.WalPush, append(append([]string{"--repo", ws.URL}, extra...), segs[0])...)
	}
	quick := func(what string, res testenv.Result, code int, want ...string) {
		t.Helper()
		mustFail(t, what, res, code, want...)
		if res.Took > time.Second {
			t.Errorf("%s took %v, want under a second", what, res.Took)
		}
	}
	quick("missing token file", push("--token-file", filepath.Join(dir, "nope.token")), 2, "nope.token", "no such file")
	quick("empty token file", push("--token-file", empty), 2, "empty")
	quick("world-readable token file", push("--token-file", open), 2, "readable by every user", "chmod o-r")
	quick("token refused", push("--token-file", wrong), 2, "the token given is not one of this walstored's")
	quick("no token at all", push(), 2, "token")
	if res := push("--token-file", good); res.Code != 0 {
		t.Fatalf("push with the good token: %s", res.Stderr)
	}

	// A stored object that fails verification: read once more, then fail.
	key := filepath.Join(repoDir, "main", "wal", filepath.Base(segs[0]))
	b, _ := os.ReadFile(key)
	b[len(b)-100] ^= 0xff
	os.Chmod(key, 0o644)
	os.WriteFile(key, b, 0o644)
	out := filepath.Join(dir, "fetched")
	quick("corrupt object", testenv.Run(t, dir, nil, bins.WalFetch, "--repo", "file://"+repoDir, "--archive", "main", filepath.Base(segs[0]), out), 3, "corrupt")
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("walfetch wrote a corrupt segment")
	}

	// Protocol mismatch: s3:// (TLS by default) against MinIO's plain
	// HTTP names the fix.
	m := testenv.SharedMinIO(t)
	plainURL := strings.Replace(strings.Replace(m.URL("mistakes"), "&tls=false", "", 1), "tls=false&", "", 1)
	quick("https against plain HTTP", testenv.Run(t, dir, m.Env(), bins.WalStored, "list", "--repo", plainURL), -1, "tls=false")

	// walstored not running: archive_command fails at once (PostgreSQL
	// calls again anyway).
	ws.Stop(t)
	quick("walstored not running", push("--token-file", good), 3, "connection refused")
}

// The chain checked end to end: walstored check passes on a good set-up
// and fails, naming the broken link, on a bad archive_command, a wrong
// archive and a stopped walstored.
func TestCheckCommand(t *testing.T) {
	t.Parallel()
	st := newSite(t, 1)
	r, p := st.r, st.p
	check := func(extra ...string) testenv.Result {
		return admin(t, r, append([]string{"check", "--pg", p.ConnString(), "--wait", "20s"}, extra...)...)
	}
	res := check("--json")
	var rep struct {
		OK      bool    `json:"ok"`
		Segment string  `json:"segment"`
		Seconds float64 `json:"archived_seconds"`
	}
	if res.Code != 0 || json.Unmarshal([]byte(res.Stdout), &rep) != nil || !rep.OK || rep.Segment == "" {
		t.Fatalf("check on a good set-up: exit %d %q %q", res.Code, res.Stdout, res.Stderr)
	}
	if res := check(); res.Code != 0 || !strings.Contains(res.Stdout, "passed") {
		t.Fatalf("check: exit %d %q", res.Code, res.Stdout)
	}
	// Another archive than the cluster's archive_command pushes to.
	wrong := testenv.Run(t, st.dir, nil, testenv.Binaries(t).WalStored, "check", "--repo", r.url, "--archive", "crm", "--pg", p.ConnString(), "--wait", "20s")
	mustFail(t, "check of the wrong archive", wrong, 1, "archive_command", `"main"`, `"crm"`)

	// A broken archive_command.
	p.Exec(`ALTER SYSTEM SET archive_command = '/bin/false'`)
	p.Exec(`SELECT pg_reload_conf()`)
	mustFail(t, "check with a failing archive_command", check("--skip-archive-command-check"), 1, "archive")
	p.Exec(`ALTER SYSTEM RESET archive_command`)
	p.Exec(`SELECT pg_reload_conf()`)
	if res := check(); res.Code != 0 {
		t.Fatalf("check after the fix: exit %d %s", res.Code, res.Stderr)
	}

	// walstored stopped.
	st.ws.Stop(t)
	res = check()
	if res.Code == 0 || !strings.Contains(res.Stderr, "connection refused") {
		t.Fatalf("check with walstored stopped: exit %d %q", res.Code, res.Stderr)
	}
}

// An idle archive-fed standby does not fill walstored's log: the
// prefetcher's probes for segments not archived yet are DEBUG lines.
func TestIdleStandbyLogsLittle(t *testing.T) {
	t.Parallel()
	st := newSite(t, 1)
	r, p := st.r, st.p
	insertBatch(p, 0, 1000)
	takeBackup(t, r, p)
	archivedTo(t, p)
	s := restore(t, r, st.dir, "standby", "--standby", "--wait", "5s")
	s.Start()
	testenv.WaitFor(t, time.Minute, "the standby to accept connections", func() bool {
		_, err := s.Conn().Exec(t.Context(), "SELECT 1")
		return err == nil
	})
	time.Sleep(3 * time.Second)
	before := strings.Count(st.ws.Log(), "\n")
	time.Sleep(30 * time.Second)
	lines := strings.Split(st.ws.Log(), "\n")
	idle := lines[before:]
	if len(idle) > 5 {
		t.Fatalf("walstored logged %d lines in 30 s of an idle standby:\n%s", len(idle), strings.Join(idle[:min(len(idle), 20)], "\n"))
	}
}

// workersIn returns the PIDs of walstore's detached workers (push-ahead,
// prefetch) working for the cluster in pgdata (their working directory,
// which PostgreSQL gave the command that started them).
func workersIn(pgdata string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) < 2 || (args[1] != "push-ahead" && args[1] != "prefetch") {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd")); err == nil && cwd == pgdata {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Detached workers (push-ahead, prefetch) exit when their PostgreSQL is
// gone, even while their store is down.
func TestDetachedWorkersExitWithTheirCluster(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	r := repo{url: ws.URL, extra: []string{"--jobs", "4"}}
	p := archivingCluster(t, dir, "primary", r, 1)
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 1000)
	takeBackup(t, r, p)
	s := restore(t, repo{url: ws.URL}, dir, "standby", "--standby", "--wait", "2s")
	s.Start()
	testenv.WaitFor(t, time.Minute, "a prefetcher for the standby", func() bool { return len(workersIn(s.Dir)) > 0 })

	ws.Stop(t)
	for i := 0; i < 4; i++ {
		insertBatch(p, i, 2000)
		p.SwitchWAL()
	}
	testenv.WaitFor(t, time.Minute, "a push-ahead worker", func() bool { return len(workersIn(p.Dir)) > 0 })
	p.Kill9()
	s.Kill9()
	testenv.WaitFor(t, 30*time.Second, "the detached workers to exit", func() bool {
		return len(workersIn(p.Dir))+len(workersIn(s.Dir)) == 0
	})
}

// JSON outputs follow one documented style: the README's table lists each
// command's top-level fields; keys are snake_case, empty lists are [],
// times are RFC 3339.
func TestJSONOutputs(t *testing.T) {
	t.Parallel()
	st := newSite(t, 1)
	r, p := st.r, st.p
	insertBatch(p, 0, 1000)
	id, _ := takeBackupRes(t, r, p)
	archivedTo(t, p)
	documented := jsonFieldsInREADME(t)
	outputs := map[string]string{}
	run := func(name string, res testenv.Result) {
		t.Helper()
		if res.Code != 0 {
			t.Fatalf("%s: exit %d %s", name, res.Code, res.Stderr)
		}
		outputs[name] = res.Stdout
	}
	bins := testenv.Binaries(t)
	run("walstored list", admin(t, r, "list", "--json"))
	run("walstored archives", admin(t, r, "archives", "--json"))
	run("walstored verify", admin(t, r, "verify", "--json"))
	run("walstored retain", admin(t, r, "retain", "--json", "--keep-last", "5", "--dry-run"))
	run("walstored check", admin(t, r, "check", "--json", "--pg", p.ConnString()))
	run("walstored backup", admin(t, r, "backup", "--json", "--pg", p.ConnString()))
	run("walstored drill", admin(t, r, "drill", "--json", "--backup", id))
	run("walstored token", testenv.Run(t, st.dir, nil, bins.WalStored, "token", "--json", "--name", "x", "--scope", "fetch", "--archives", "main"))
	target := filepath.Join(testenv.PostgresDir(t, st.dir, "r"), "data")
	run("walfetch restore", testenv.Run(t, st.dir, nil, bins.WalFetch, "restore", "--json", "--repo", r.url, "--archive", "main", "--pgdata", target, "--owner", "postgres"))
	for cmd, fields := range documented {
		out, ok := outputs[cmd]
		if !ok {
			t.Errorf("README documents %s --json, the test does not run it", cmd)
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Errorf("%s --json: %v", cmd, err)
			continue
		}
		obj, _ := v.(map[string]any)
		if arr, ok := v.([]any); ok && len(arr) > 0 {
			obj, _ = arr[0].(map[string]any)
		}
		var got []string
		for k := range obj {
			got = append(got, k)
		}
		if g, w := sortedJoin(got), sortedJoin(fields); g != w {
			t.Errorf("%s --json fields:\n got  %s\n README %s", cmd, g, w)
		}
		checkJSONStyle(t, cmd, "", v)
	}
	for cmd := range outputs {
		if _, ok := documented[cmd]; !ok {
			t.Errorf("%s --json is not documented in the README's JSON table", cmd)
		}
	}
}

func sortedJoin(s []string) string {
	c := append([]string{}, s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return strings.Join(c, " ")
}

var snake = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// checkJSONStyle walks a decoded JSON value: snake_case keys, no null
// where a list belongs (keys ending in s are lists or counts), times in
// RFC 3339.
func checkJSONStyle(t *testing.T, cmd, path string, v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if !snake.MatchString(k) {
				t.Errorf("%s: key %s%s is not snake_case", cmd, path, k)
			}
			if s, ok := e.(string); ok && (strings.HasSuffix(k, "_time") || strings.HasSuffix(k, "_at") || k == "started") {
				if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
					t.Errorf("%s: %s%s = %q is not an RFC 3339 time", cmd, path, k, s)
				}
			}
			checkJSONStyle(t, cmd, path+k+".", e)
		}
	case []any:
		for _, e := range x {
			checkJSONStyle(t, cmd, path+"[].", e)
		}
	}
}

// jsonFieldsInREADME reads the README's table of --json outputs: a row
// per command, its top-level fields in backquotes.
func jsonFieldsInREADME(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "<!-- json-fields -->")
	j := strings.Index(text, "<!-- /json-fields -->")
	if i < 0 || j < i {
		t.Fatal("README.md has no json-fields table")
	}
	out := map[string][]string{}
	field := regexp.MustCompile("`([a-z0-9_]+)`")
	for _, row := range strings.Split(text[i:j], "\n") {
		cells := strings.Split(row, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		cmd := strings.Trim(strings.TrimSpace(cells[1]), "`")
		cmd = strings.TrimSuffix(cmd, " --json")
		for _, m := range field.FindAllStringSubmatch(cells[2], -1) {
			out[cmd] = append(out[cmd], m[1])
		}
	}
	if len(out) == 0 {
		t.Fatal("README's json-fields table is empty")
	}
	return out
}

// Every binary says which walstore it is: version, commit, Go version.
func TestVersion(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	for name, bin := range map[string]string{"walpush": bins.WalPush, "walfetch": bins.WalFetch, "walstored": bins.WalStored} {
		res := testenv.Run(t, testenv.Dir(t), nil, bin, "--version")
		if res.Code != 0 || !strings.HasPrefix(res.Stdout, name+" (walstore) ") || !strings.Contains(res.Stdout, "commit ") || !strings.Contains(res.Stdout, "go1.") {
			t.Errorf("%s --version: exit %d %q %q", name, res.Code, res.Stdout, res.Stderr)
		}
	}
}

// A config file's mistake fails whichever client reads it first, and says
// what was probably meant; the clients' sections' settings are each
// binary's flags.
func TestConfigMistakesFailAtOnce(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	seg := segmentFiles(t, 1)[0]
	for _, tc := range []struct{ text, want string }{
		{"repo = file:///nowhere\narchive = main\n[walfetch]\ncompress-level = 3\n", `unknown setting "compress-level" under [walfetch]`},
		{"repository = file:///nowhere\n", `did you mean "repo"`},
		{"repo = file:///nowhere\n[walpush]\njbos = 4\n", `did you mean "jobs"`},
	} {
		p := filepath.Join(testenv.Dir(t), "walstore.conf")
		os.WriteFile(p, []byte(tc.text), 0o644)
		res := testenv.Run(t, dir, nil, bins.WalPush, "--config", p, seg)
		if res.Code != 2 || !strings.Contains(res.Stderr, tc.want) {
			t.Errorf("walpush with %q: exit %d %q, want 2 naming %s", tc.text, res.Code, res.Stderr, tc.want)
		}
	}
	flags := func(args ...string) map[string]bool {
		res := testenv.Run(t, dir, nil, args[0], args[1:]...)
		out := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z-]+)`).FindAllStringSubmatch(res.Stdout+res.Stderr, -1) {
			out[m[1]] = true
		}
		return out
	}
	push, agent, fetch, restore := flags(bins.WalPush, "--help"), flags(bins.WalPush, "agent", "--help"), flags(bins.WalFetch, "--help"), flags(bins.WalFetch, "restore", "--help")
	for _, k := range cli.SectionKeys["walpush"] {
		if !push[k] && !agent[k] {
			t.Errorf("[walpush] %s is no walpush flag", k)
		}
	}
	for _, k := range cli.SectionKeys["walfetch"] {
		if !fetch[k] && !restore[k] {
			t.Errorf("[walfetch] %s is no walfetch flag", k)
		}
	}
	shared := map[string]bool{"repo": true, "archive": true, "token-file": true, "cacert": true, "client-cert": true, "client-key": true, "verbose": true, "config": true,
		"encryption-key-file": true, "encryption-passphrase-file": true, "decryption-key-files": true, "help": true}
	for section, fs := range map[string][]map[string]bool{"walpush": {push, agent}, "walfetch": {fetch, restore}} {
		for _, m := range fs {
			for k := range m {
				if !shared[k] && !slices.Contains(cli.SectionKeys[section], k) {
					t.Errorf("%s flag --%s is missing from cli.SectionKeys[%q]", section, k, section)
				}
			}
		}
	}
}

// First-day mistakes say what is wrong: an archive typo in a restore
// names the archives; a non-empty PGDATA names --delta; http:// against
// walstored's TLS port says to use https://.
func TestFirstDayMistakes(t *testing.T) {
	t.Parallel()
	st := newSite(t, 0)
	insertBatch(st.p, 0, 100)
	takeBackup(t, st.r, st.p)
	bins := testenv.Binaries(t)
	target := filepath.Join(testenv.PostgresDir(t, st.dir, "r-parent"), "r")
	res := testenv.Run(t, st.dir, nil, bins.WalFetch, "restore", "--repo", st.r.url, "--archive", "mian", "--pgdata", target, "--owner", "postgres")
	if res.Code == 0 || !strings.Contains(res.Stderr, "archive mian does not exist") || !strings.Contains(res.Stderr, "main") {
		t.Errorf("restore --archive mian: exit %d %q", res.Code, res.Stderr)
	}
	res = testenv.Run(t, st.dir, nil, bins.WalFetch, "restore", "--repo", st.r.url, "--archive", "main", "--pgdata", st.p.Dir)
	if res.Code == 0 || !strings.Contains(res.Stderr, "--delta") {
		t.Errorf("restore over a cluster: exit %d %q", res.Code, res.Stderr)
	}
	ca := testenv.NewCA(t, "walstore-test")
	cert, key := ca.Issue(t, "localhost", true)
	tls := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(testenv.Dir(t), "repo"), "--tls-cert", cert, "--tls-key", key)
	plain := strings.Replace(tls.URL, "https://", "http://", 1)
	res = testenv.Run(t, st.dir, nil, bins.WalFetch, "--repo", plain, "--archive", "main", "000000010000000000000001", filepath.Join(testenv.Dir(t), "x"))
	if res.Code == 0 || !strings.Contains(res.Stderr, "serves HTTPS: use --repo https://") {
		t.Errorf("http:// against the TLS port: exit %d %q", res.Code, res.Stderr)
	}
}

// walstored backup with an archive_command that calls a wrapper script:
// accepted once a segment it archives reaches the archive; a wrapper that
// pushes to another repository fails fast, saying so.
func TestBackupProvesAWrapperArchiveCommand(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	other := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "other"))
	wrapper := filepath.Join(dir, "archive.sh")
	write := func(url string) {
		os.WriteFile(wrapper, []byte(fmt.Sprintf("#!/bin/sh\nexec %s --repo %s --archive main --jobs 1 \"$1\"\n", bins.WalPush, url)), 0o755)
	}
	write(ws.URL)
	c := testenv.NewCluster(t, dir, "primary", testenv.ClusterOptions{Conf: []string{"archive_mode = on", "archive_command = '" + wrapper + " %p'"}})
	c.Start()
	c.Exec(ledgerDDL)
	insertBatch(c, 0, 100)
	r := repo{url: ws.URL}
	takeBackup(t, r, c)
	write(other.URL)
	res := admin(t, r, "backup", "--pg", c.ConnString(), "--wal-timeout", "20s")
	if res.Code == 0 || !strings.Contains(res.Stderr, "does not say which archive it pushes to") {
		t.Fatalf("backup with a wrapper pushing elsewhere: exit %d %s%s", res.Code, res.Stdout, res.Stderr)
	}
}
