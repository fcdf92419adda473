package tests

import (
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/tests/testenv"
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

// pageColours counts the pixels of a screenshot of exactly each of the
// given colours ("#rrggbb"), after checking it is a whole page.
func pageColours(t *testing.T, path string, colours ...string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() < 800 {
		t.Fatalf("screenshot %s is %v", path, b)
	}
	want := map[[3]uint8]string{}
	for _, c := range colours {
		var rgb [3]uint8
		fmt.Sscanf(c, "#%02x%02x%02x", &rgb[0], &rgb[1], &rgb[2])
		want[rgb] = c
	}
	out := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if c, ok := want[[3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}]; ok {
				out[c]++
			}
		}
	}
	return out
}

// Colours of the status page (status.html's style).
const (
	okBadge  = "#d8f3df" // state-ok
	badBadge = "#fbd9d9" // gap, dead_branch, broken, error
	redLine  = "#d62728" // a gap, a fork to a dead branch
	deadRun  = "#c9a0a0" // WAL of a dead branch
	forkLine = "#7b4fb8" // a fork to a live timeline
)

// The status page, in a real browser, against a walstored with two
// archives of real PostgreSQL WAL, in four states, each a screenshot and
// its DOM: a healthy archive; one with a dead branch; the same with a
// gap; the healthy one right after a failover promoted a restored copy.
// The DOM shows the states and reasons, one bar per backup, the gap and
// the forks where they are in time; the screenshots show the colours
// that say so.
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

	// shoot loads the page of one archive (?archive=) until ready says
	// its DOM is what the state should show, then takes its screenshot
	// (kept in $WALSTORE_STATUS_SCREENSHOTS if set).
	shoot := func(state, archive string, ready func(dom string) bool) (dom, png string) {
		url := ws.URL + "/?archive=" + archive
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
			if dom = chromium(t, "--dump-dom", url); ready(dom) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the page never showed %s:\n%s", state, dom)
			}
		}
		png = filepath.Join(testenv.Dir(t), state+".png")
		chromium(t, "--screenshot="+png, url)
		if dst := os.Getenv("WALSTORE_STATUS_SCREENSHOTS"); dst != "" {
			b, _ := os.ReadFile(png)
			os.MkdirAll(dst, 0o755)
			os.WriteFile(filepath.Join(dst, state+".png"), b, 0o644)
		}
		if strings.Contains(dom, "<script") {
			t.Fatal("the page has a script")
		}
		return dom, png
	}
	section := func(dom, archive string) string {
		i := strings.Index(dom, `<section class="archive" id="archive-`+archive+`"`)
		if i < 0 {
			t.Fatalf("no section for %s", archive)
		}
		sec := dom[i:]
		return sec[:strings.Index(sec, "</section>")]
	}
	stateOf := func(dom, archive string) string {
		for _, r := range elements(dom, "tr", "archive-row") {
			if r["data-archive"] == archive {
				return r["data-state"]
			}
		}
		return ""
	}

	// 1. Healthy: ok, three backups, retention's next cut at the second;
	// a green badge and nothing red.
	dom, shot := shoot("healthy", "healthy", func(dom string) bool { return strings.Contains(dom, `data-archive="healthy"`) })
	if st := stateOf(dom, "healthy"); st != "ok" || strings.Contains(dom, `data-archive="main"`) {
		t.Fatalf("healthy alone: state %q, main shown: %v", st, strings.Contains(dom, `data-archive="main"`))
	}
	hsec := section(dom, "healthy")
	hbars, cuts := elements(hsec, "rect", "backup"), elements(hsec, "line", "cut")
	if len(hbars) != 3 || len(cuts) != 1 || cuts[0]["data-oldest-kept"] != second || !(num(t, hbars[0]["x"]) < num(t, cuts[0]["x1"]) && num(t, cuts[0]["x1"]) <= num(t, hbars[1]["x"])) {
		t.Fatalf("healthy: %d backup bars %v, retention cuts %v (want one at backup %s)", len(hbars), hbars, cuts, second)
	}
	if len(elements(hsec, "line", "gap")) != 0 || len(elements(hsec, "line", "fork")) != 0 {
		t.Fatal("healthy: a gap or fork drawn")
	}
	// The axis spans the data: the first backup starts near the left,
	// the newest WAL ends near the right.
	if x := num(t, hbars[0]["x"]); x > 140 {
		t.Fatalf("healthy: the first backup is drawn at x=%d, the axis does not start at the data", x)
	}
	if c := pageColours(t, shot, okBadge, badBadge, redLine); c[okBadge] < 100 || c[badBadge] != 0 || c[redLine] != 0 {
		t.Fatalf("healthy screenshot colours: %v", c)
	}
	stores := elements(dom, "tr", "store-row")
	if len(stores) != 1 || stores[0]["data-up"] != "true" || num(t, stores[0]["data-stored"]) == 0 {
		t.Fatalf("stores on the page: %v", stores)
	}

	// 2. A dead branch: main is dead_branch, timeline 3 named, its fork
	// and WAL drawn red.
	dom, shot = shoot("dead-branch", "main", func(dom string) bool { return strings.Contains(dom, `data-archive="main"`) })
	if st := stateOf(dom, "main"); st != "dead_branch" || !strings.Contains(dom, "timeline 3 is a dead branch") {
		t.Fatalf("main: state %q, or the reason is not on the page", st)
	}
	sec := section(dom, "main")
	bars, forks := elements(sec, "rect", "backup"), elements(sec, "line", "fork")
	if len(bars) != 2 {
		t.Fatalf("%d backup bars for main's 2 backups", len(bars))
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
	deadColours := pageColours(t, shot, okBadge, badBadge, redLine, deadRun, forkLine)
	if deadColours[badBadge] < 100 || deadColours[okBadge] != 0 || deadColours[redLine] == 0 || deadColours[deadRun] == 0 || deadColours[forkLine] == 0 {
		t.Fatalf("dead-branch screenshot colours: %v", deadColours)
	}

	// 3. A gap in main: a segment of timeline 2 after its newest backup.
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
	dom, shot = shoot("gap", "main", func(dom string) bool { return strings.Contains(dom, `data-first="`+gapName+`"`) })
	if !strings.Contains(dom, "1 gap in the WAL") {
		t.Fatalf("the gap is not among the reasons:\n%s", dom)
	}
	sec = section(dom, "main")
	bars, forks, gaps := elements(sec, "rect", "backup"), elements(sec, "line", "fork"), elements(sec, "line", "gap")
	if len(gaps) != 1 || gaps[0]["data-first"] != gapName {
		t.Fatalf("gaps drawn: %v, want one at %s", gaps, gapName)
	}
	byChild = map[string]map[string]string{}
	for _, f := range forks {
		byChild[f["data-child"]] = f
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
	if c := pageColours(t, shot, redLine); c[redLine] <= deadColours[redLine] {
		t.Fatalf("the gap adds no red to the screenshot: %d red pixels, %d before", c[redLine], deadColours[redLine])
	}

	// 4. Right after a promotion: healthy's primary is gone, a copy
	// restored from its newest backup is promoted to timeline 2 and
	// archives there. The page shows timeline 2 newest, its fork from 1
	// drawn as a live one, and the archive still ok.
	archivedTo(t, h)
	h.Stop()
	p := restore(t, repo{url: ws.URL}, ds.dir, "healthy-promoted", "--archive", "healthy")
	p.Start()
	p.WaitRecovered(2 * time.Minute)
	if tl := p.Timeline(); tl != 2 {
		t.Fatalf("the promoted copy is on timeline %d", tl)
	}
	insertBatch(p, 3, 1000)
	end := archivedTo(t, p)
	newest := p.QueryString("SELECT pg_walfile_name('" + end + "'::pg_lsn - 1)")
	dom, shot = shoot("promoted", "healthy", func(dom string) bool {
		return strings.Contains(dom, newest) && len(elements(section(dom, "healthy"), "line", "fork")) == 1
	})
	if st := stateOf(dom, "healthy"); st != "ok" {
		t.Fatalf("healthy after the promotion: state %q\n%s", st, dom)
	}
	hsec = section(dom, "healthy")
	forks = elements(hsec, "line", "fork")
	if forks[0]["data-child"] != "2" || strings.Contains(forks[0]["class"], "dead") || !strings.Contains(hsec, "timeline 2") {
		t.Fatalf("healthy after the promotion: forks %v", forks)
	}
	if c := pageColours(t, shot, okBadge, badBadge, redLine, forkLine); c[okBadge] < 100 || c[badBadge] != 0 || c[redLine] != 0 || c[forkLine] == 0 {
		t.Fatalf("promoted screenshot colours: %v", c)
	}
	p.Stop()
}
