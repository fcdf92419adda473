package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/internal/testenv"
	"github.com/walstore/walstore/store/httpstore"
)

// chromium runs Debian's chromium headless with args and returns its
// standard output.
func chromium(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: make test installs it (Debian package chromium)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir=" + filepath.Join(home, "profile"), "--window-size=1280,1600"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// elements returns the attributes of the DOM's elements tag whose class
// attribute starts with class, in document order.
func elements(dom, tag, class string) []map[string]string {
	re := regexp.MustCompile(`<` + tag + `\s([^>]*class="` + class + `[" ][^>]*)>`)
	attrRe := regexp.MustCompile(`([a-z0-9-]+)="([^"]*)"`)
	var out []map[string]string
	for _, m := range re.FindAllStringSubmatch(dom, -1) {
		attrs := map[string]string{}
		for _, a := range attrRe.FindAllStringSubmatch(m[1], -1) {
			attrs[a[1]] = a[2]
		}
		out = append(out, attrs)
	}
	return out
}

func num(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// The status page, in a real browser, against a walstored with two
// archives of real PostgreSQL WAL: one healthy; one with a gap and a dead
// branch. The DOM shows their states and reasons, one bar per backup, and
// the gap and the fork where they are in time.
func TestStatusPageInChromium(t *testing.T) {
	ds := newDeadBranchSite(t) // archive main: timeline 3 dead, newest backup on 2
	ws := ds.ws
	// The healthy archive: another cluster, a backup, WAL after it.
	h := archivingCluster(t, ds.dir, "healthy", repo{url: ws.URL, extra: []string{"--archive", "healthy"}}, 1)
	h.WriteConf(fmt.Sprintf("archive_command = '%s --repo %s --archive healthy %%p'", testenv.Binaries(t).WalPush, ws.URL))
	h.Start()
	h.Exec(ledgerDDL)
	insertBatch(h, 0, 1000)
	res := testenv.Run(t, ds.dir, nil, testenv.Binaries(t).WalStored, "backup", "--repo", ws.URL, "--archive", "healthy", "--pg", h.ConnString())
	if res.Code != 0 {
		t.Fatalf("backup of healthy: %s", res.Stderr)
	}
	insertBatch(h, 1, 1000)
	archivedTo(t, h)
	// Retention ran once with --keep-last 2 (two backups then: nothing to
	// remove); a third backup since makes the first one the next to go.
	backupID := func() string {
		res := testenv.Run(t, ds.dir, nil, testenv.Binaries(t).WalStored, "backup", "--repo", ws.URL, "--archive", "healthy", "--pg", h.ConnString())
		m := regexp.MustCompile(`backup (\S+) of archive healthy`).FindStringSubmatch(res.Stdout)
		if res.Code != 0 || m == nil {
			t.Fatalf("backup of healthy: %s%s", res.Stdout, res.Stderr)
		}
		return m[1]
	}
	second := backupID()
	if res := testenv.Run(t, ds.dir, nil, testenv.Binaries(t).WalStored, "retain", "--repo", ws.URL, "--archive", "healthy", "--keep-last", "2"); res.Code != 0 {
		t.Fatalf("retain: %s", res.Stderr)
	}
	insertBatch(h, 2, 1000)
	archivedTo(t, h)
	backupID()

	// A gap in main: a segment of timeline 2 after its newest backup.
	hs, _ := httpstore.New(ws.URL, httpstore.Options{})
	segs := storeKeys(t, openRepo(t, ds.repoDir), "main/wal/00000002")
	var tl2 []string
	for _, k := range segs {
		if len(filepath.Base(k)) == 24 {
			tl2 = append(tl2, k)
		}
	}
	if len(tl2) < 4 {
		t.Fatalf("timeline 2 has %d segments", len(tl2))
	}
	gapKey := tl2[len(tl2)-2]
	if err := hs.Delete(context.Background(), gapKey); err != nil {
		t.Fatal(err)
	}
	gapName := filepath.Base(gapKey)

	var dom string
	testenv.WaitFor(t, time.Minute, "the page to show both archives after a scan with the gap", func() bool {
		dom = chromium(t, "--dump-dom", ws.URL+"/")
		return strings.Contains(dom, `data-archive="healthy"`) && strings.Contains(dom, `data-first="`+gapName+`"`)
	})
	shot := filepath.Join(testenv.Dir(t), "status.png")
	chromium(t, "--screenshot="+shot, ws.URL+"/")
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10000 {
		t.Fatalf("screenshot: %v", err)
	}
	if dst := os.Getenv("WALSTORE_STATUS_SCREENSHOT"); dst != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(dst, b, 0o644)
	}

	rows := elements(dom, "tr", "archive-row")
	states := map[string]string{}
	for _, r := range rows {
		states[r["data-archive"]] = r["data-state"]
	}
	if states["healthy"] != "ok" || states["main"] != "dead_branch" {
		t.Fatalf("states: %v\n%s", states, dom)
	}
	if !strings.Contains(dom, "timeline 3 is a dead branch") || !strings.Contains(dom, "1 gap in the WAL") {
		t.Fatalf("the reasons are not on the page:\n%s", dom)
	}
	section := dom[strings.Index(dom, `<section class="archive" id="archive-main"`):]
	section = section[:strings.Index(section, "</section>")]
	bars := elements(section, "rect", "backup")
	if len(bars) != 2 {
		t.Fatalf("%d backup bars for main's 2 backups", len(bars))
	}
	gaps := elements(section, "line", "gap")
	forks := elements(section, "line", "fork")
	if len(gaps) != 1 || gaps[0]["data-first"] != gapName {
		t.Fatalf("gaps drawn: %v, want one at %s", gaps, gapName)
	}
	// Two forks: timeline 2 from 1 (the PITR: 1's continuation abandoned,
	// not a problem), timeline 3 from 2 (dead).
	byChild := map[string]map[string]string{}
	for _, f := range forks {
		byChild[f["data-child"]] = f
	}
	if len(forks) != 2 || byChild["3"] == nil || !strings.Contains(byChild["3"]["class"], "dead") || byChild["2"] == nil || strings.Contains(byChild["2"]["class"], "dead") {
		t.Fatalf("forks drawn: %v, want timeline 2's (live) and 3's (dead)", forks)
	}
	// In time: backup 1, then the PITR's fork to 2 (drawn when the archive
	// first had timeline 2's history, which may be after backup 2 began);
	// backup 2, then the dead fork to 3 (made after it), and the gap after
	// that (in WAL archived later).
	b1, b2 := num(t, bars[0]["x"]), num(t, bars[1]["x"])
	f2, f3, gx := num(t, byChild["2"]["x1"]), num(t, byChild["3"]["x1"]), num(t, gaps[0]["x1"])
	if !(b1 < f2 && f2 < f3 && b1 < b2 && b2 < f3 && f3 <= gx) {
		t.Fatalf("positions: backup at %d, fork to 2 at %d, backup at %d, fork to 3 at %d, gap at %d", b1, f2, b2, f3, gx)
	}
	// Retention's next cut in healthy: at its second backup (the oldest
	// that keep-last 2 keeps), after the first backup's bar, before the
	// second's end.
	hsec := dom[strings.Index(dom, `<section class="archive" id="archive-healthy"`):]
	hsec = hsec[:strings.Index(hsec, "</section>")]
	hbars, cuts := elements(hsec, "rect", "backup"), elements(hsec, "line", "cut")
	if len(hbars) != 3 || len(cuts) != 1 || cuts[0]["data-oldest-kept"] != second || !(num(t, hbars[0]["x"]) < num(t, cuts[0]["x1"]) && num(t, cuts[0]["x1"]) <= num(t, hbars[1]["x"])) {
		t.Fatalf("healthy: %d backup bars %v, retention cuts %v (want one at backup %s)", len(hbars), hbars, cuts, second)
	}
	if strings.Contains(dom, "<script") {
		t.Fatal("the page has a script")
	}
}
