package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/tests/testenv"
)

// TestBackupTokenAddsButNeverDeletes: a database host holds a push and a
// backup token, never admin. walstored backup --pgdata works with the
// backup token; the same token gets 403 for every DELETE, cannot replace
// a pack or a record, and cannot write what only admin writes.
//
// The pack poisoning of issue 28, planted with direct store access (what
// a stolen admin token or a compromised store host could write): a pack
// holding "99\n" and an incomplete backup's progress record claiming it
// holds PG_VERSION's "15\n". The next honest backup does not use it (it
// reads the pack back and warns); a backup whose contents are forged to
// list it fails to restore, naming the file; verify --deep names the pack.
func TestBackupTokenAddsButNeverDeletes(t *testing.T) {
	t.Parallel()
	ts := newTokenSite(t)
	backupTok, backupLine := mintToken(t, "db1-backup", "backup", "*")
	tokens := filepath.Join(ts.dir, "tokens")
	old, _ := os.ReadFile(tokens)
	os.WriteFile(tokens, append(old, []byte(backupLine+"\n")...), 0o600)
	ts.ws.Restart(t)
	backupFile := tokenFile(t, ts.dir, "backup", backupTok)
	backupRepo := repo{url: ts.ws.URL, extra: []string{"--token-file", backupFile}}
	insertBatch(ts.p, 0, 1000)

	// The poison, planted before any backup (so no completed backup's
	// block can stand in for it).
	fs, err := filestore.Open(ts.repoDir, filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.New(fs, "main")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	poison := []byte("99\n")
	sum := sha256.Sum256(poison)
	packID := hex.EncodeToString(sum[:])
	obj, err := a.Encoder().EncodeBytes(poison, a.Layout.Pack(packID))
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Put(ctx, a.Layout.Pack(packID), store.Bytes(obj.Bytes())); err != nil {
		t.Fatal(err)
	}
	real := sha256.Sum256([]byte("15\n"))
	fake := "20260101T000000Z"
	if _, err := a.PutBackupJSON(ctx, fake, archive.ProgressPrefix+"0000", archive.PackProgress{Pack: packID, Blocks: []archive.PackBlock{{SHA256: hex.EncodeToString(real[:]), Off: 0, Len: 3}}}); err != nil {
		t.Fatal(err)
	}

	// An honest backup with the backup token, read locally.
	res := admin(t, backupRepo, "backup", "--pg", ts.p.ConnString(), "--pgdata", ts.p.Dir)
	if res.Code != 0 {
		t.Fatalf("walstored backup --pgdata with a backup token: exit %d %s%s", res.Code, res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "does not hold 1 of the blocks it lists") {
		t.Fatalf("the planted block was not caught: %s", res.Stderr)
	}
	l, err := a.ListBackups(ctx)
	if err != nil || len(l.Complete) != 1 {
		t.Fatalf("backups: %+v %v", l, err)
	}
	honest := l.Complete[0]
	c, err := a.ReadContents(ctx, honest.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Packs {
		if p == packID {
			t.Fatal("the honest backup refers to the planted pack")
		}
	}
	rc := restore(t, ts.adminRepo(), ts.dir, "honest", "--token-file", ts.adminFile)
	if v, _ := os.ReadFile(filepath.Join(rc.Dir, "PG_VERSION")); string(v) != "15\n" {
		t.Fatalf("restored PG_VERSION %q", v)
	}

	// What the backup token must not do.
	hs := ts.client(t, backupTok)
	someKey := a.Layout.Backup(honest.ID, archive.RecordFile)
	if err := hs.Delete(ctx, someKey); !errors.Is(err, errkind.ErrForbidden) {
		t.Fatalf("DELETE of a backup record with a backup token: %v, want forbidden", err)
	}
	if err := hs.Delete(ctx, a.Layout.Pack(c.Packs[0])); !errors.Is(err, errkind.ErrForbidden) {
		t.Fatalf("DELETE of a pack with a backup token: %v, want forbidden", err)
	}
	if err := hs.Delete(ctx, a.Layout.WAL(mustName(ts.p.SwitchWAL()))); err == nil {
		t.Fatal("DELETE of a segment with a backup token succeeded")
	}
	rec2, _ := a.Encoder().EncodeBytes([]byte(`{"id":"x"}`), someKey)
	if err := hs.Put(ctx, someKey, store.Bytes(rec2.Bytes())); err == nil {
		t.Fatal("a backup token replaced a completion record")
	}
	for _, key := range []string{a.Layout.System(), a.Layout.RetiredRecord(2), a.Layout.DrillsPrefix() + "x"} {
		o, _ := a.Encoder().EncodeBytes([]byte("{}"), key)
		if err := hs.Put(ctx, key, store.Bytes(o.Bytes())); !errors.Is(err, errkind.ErrForbidden) {
			t.Fatalf("put of %s with a backup token: %v, want forbidden", key, err)
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, ts.ws.URL+"/v1/archives/main/objects/"+strings.TrimPrefix(someKey, "main/"), nil)
	req.Header.Set("Authorization", "Bearer "+backupTok)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("raw DELETE with a backup token: %v %v", resp, err)
	}

	// A backup forced to list the planted block: its restore fails
	// naming the file; verify --deep names the pack.
	forged := honest
	forged.ID = "20261207T000000Z"
	fc := c
	fc.Packs = append(append([]string{}, c.Packs...), packID)
	fc.Entries = append([]archive.Entry{}, c.Entries...)
	for i, e := range fc.Entries {
		if e.Path == "PG_VERSION" {
			fc.Entries[i].Blocks = []archive.Block{{Pack: len(fc.Packs) - 1, Off: 0, Len: 3, SHA256: hex.EncodeToString(real[:])}}
		}
	}
	if _, err := a.PutBackupJSON(ctx, forged.ID, archive.ContentsFile, fc); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{archive.ManifestFile} {
		if b, _, err := a.ReadAll(ctx, a.Layout.Backup(honest.ID, f), 1<<30); err == nil {
			a.PutBackupJSON(ctx, forged.ID, f, json.RawMessage(b))
		}
	}
	if err := a.PutRecord(ctx, forged); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(testenv.PostgresDir(t, ts.dir, "forged-parent"), "forged")
	r := testenv.Run(t, ts.dir, nil, testenv.Binaries(t).WalFetch, append([]string{"restore", "--pgdata", dir, "--owner", "postgres", "--backup", forged.ID}, ts.adminRepo().args()...)...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "PG_VERSION") || !strings.Contains(r.Stderr, "block") {
		t.Fatalf("restore of the forged backup: exit %d %s", r.Code, r.Stderr)
	}
	v := admin(t, ts.adminRepo(), "verify", "--deep")
	if v.Code == 0 || !strings.Contains(v.Stdout+v.Stderr, "packs/"+packID) {
		t.Fatalf("verify --deep: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
}

// TestDrillRunsNothingOfTheDatabaseHost: the drill (root, admin token)
// restores a backup whose configuration carries the payloads of issue
// 28: a library under session_preload_libraries, recovery_end_command in
// postgresql.conf, a tab-separated recovery_end_command in
// postgresql.auto.conf, and an include of a file inside PGDATA. The drill
// passes, no payload ran, and at no moment of the drill did a file under
// its scratch directory hold the admin token.
func TestDrillRunsNothingOfTheDatabaseHost(t *testing.T) {
	t.Parallel()
	ts := newTokenSite(t)
	insertBatch(ts.p, 0, 1000)
	markers := testenv.Dir(t)
	marker := func(n string) string { return filepath.Join(markers, "ran-"+n) }
	ts.p.WriteConf(
		"recovery_end_command = 'touch "+marker("conf")+"'",
		"include 'evil.conf'",
	)
	os.WriteFile(filepath.Join(ts.p.Dir, "evil.conf"), []byte("archive_cleanup_command = 'touch "+marker("include")+"'\n"), 0o600)
	auto, _ := os.ReadFile(filepath.Join(ts.p.Dir, "postgresql.auto.conf"))
	auto = append(auto, []byte("recovery_end_command\t'touch "+marker("tab")+"'\nsession_preload_libraries = 'pg_evil/evil.so'\n")...)
	os.WriteFile(filepath.Join(ts.p.Dir, "postgresql.auto.conf"), auto, 0o600)
	testenv.Chown(t, ts.p.Dir)
	takeBackup(t, ts.adminRepo(), ts.p)
	insertBatch(ts.p, 1, 100)
	ts.p.WaitArchived(ts.p.SwitchWAL(), time.Minute)

	scratch := testenv.Dir(t)
	done := make(chan struct{})
	leaked := make(chan string, 1)
	go func() {
		for {
			select {
			case <-done:
				close(leaked)
				return
			default:
			}
			filepath.Walk(scratch, func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().IsRegular() && fi.Size() < 1<<20 {
					if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(ts.admin)) {
						select {
						case leaked <- p:
						default:
						}
					}
				}
				return nil
			})
			time.Sleep(20 * time.Millisecond)
		}
	}()
	res := admin(t, ts.adminRepo(), "drill", "--scratch", scratch)
	close(done)
	if res.Code != 0 || !strings.Contains(res.Stdout, "passed") {
		t.Fatalf("drill: exit %d %s%s", res.Code, res.Stdout, res.Stderr)
	}
	if p, ok := <-leaked; ok && p != "" {
		t.Fatalf("the admin token was in %s during the drill", p)
	}
	for _, n := range []string{"conf", "include", "tab"} {
		if _, err := os.Stat(marker(n)); err == nil {
			t.Fatalf("the %s payload ran during the drill", n)
		}
	}
}

// TestPatroniShapedRestore: Patroni writes hba_file, ident_file and
// log_directory as the source node's absolute paths. A restore to
// another place warns, naming them; with --config-path-mapping the copy
// starts, reading the new place's files.
func TestPatroniShapedRestore(t *testing.T) {
	t.Parallel()
	st := newSite(t, 0)
	insertBatch(st.p, 0, 1000)
	node := "/nonexistent-patroni-node/15/main"
	st.p.WriteConf("hba_file = '"+node+"/pg_hba.conf'", "ident_file = '"+node+"/pg_ident.conf'")
	takeBackup(t, st.r, st.p)
	st.p.WaitArchived(st.p.SwitchWAL(), time.Minute)
	_, out := restoreOut(t, st.r, st.dir, "plain")
	if !strings.Contains(out, "hba_file") || !strings.Contains(out, "ident_file") || !strings.Contains(out, "--config-path-mapping") {
		t.Fatalf("restore names no foreign path:\n%s", out)
	}
	here := testenv.PostgresDir(t, st.dir, "node-files")
	for _, f := range []string{"pg_hba.conf", "pg_ident.conf"} {
		b, err := os.ReadFile(filepath.Join(st.p.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(here, f), b, 0o600)
	}
	testenv.Chown(t, here)
	c, out := restoreOut(t, st.r, st.dir, "mapped", "--config-path-mapping", "/nonexistent-patroni-node/15/main="+here)
	if strings.Contains(out, "names a path that does not exist") {
		t.Fatalf("mapped restore still warns:\n%s", out)
	}
	c.Start()
	c.WaitRecovered(3 * time.Minute)
	if got := c.QueryString("SHOW hba_file"); got != filepath.Join(here, "pg_hba.conf") {
		t.Fatalf("hba_file %s", got)
	}
	c.Stop()
}

// A password in --receive shows in ps: walstored says so at start.
func TestReceivePasswordInPsIsWarned(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"),
		"--receive", "main=host=127.0.0.1 port=1 user=walstore_receiver password=hunter2", "--receive-dir", filepath.Join(dir, "recv"))
	testenv.WaitFor(t, 10*time.Second, "the warning about the password", func() bool {
		return strings.Contains(ws.Log(), "a password in --receive shows in ps")
	})
	if strings.Contains(ws.Log(), "hunter2") {
		t.Fatal("the log repeats the password")
	}
}
