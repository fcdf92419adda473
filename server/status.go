package server

import (
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/walstore/walstore/wal"

	"github.com/walstore/walstore/base/units"
	"github.com/walstore/walstore/catalog"
	"github.com/walstore/walstore/receiver"
	"github.com/walstore/walstore/server/auth"
	"github.com/walstore/walstore/store"
)

// The status page (GET /) and its JSON (GET /v1/status): every archive
// the client may see, from the scanner's last catalog scan, so a page
// view costs no store call at all. Rendered on the server with
// html/template (which escapes every name and label) and inline SVG: no
// script, no external asset, an air-gapped storage host serves it whole.
//
// Access: without a token file, everything (walstored listens on
// loopback, or was told --insecure). With one, a fetch or admin token,
// given as HTTP basic authentication (the token as password: the browser
// asks for it; never in a URL) or as a bearer token; the page shows only
// the archives that token may read.

//go:embed status.html
var statusFS embed.FS

var statusTmpl = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"size": units.Size,
	"ago":  ago,
	"utc":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	// low: under a tenth of the file system is left.
	"low": func(h store.Health) bool { return h.CapacityBytes > 0 && h.FreeBytes < h.CapacityBytes/10 },
}).ParseFS(statusFS, "status.html"))

// statusReader returns which archives the request may see, or answers
// 401 and returns false.
func (s *Server) statusReader(w http.ResponseWriter, r *http.Request) (func(string) bool, bool) {
	if s.cfg.Tokens == nil {
		return func(string) bool { return true }, true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		_, tok, ok = r.BasicAuth()
	}
	c, found := s.cfg.Tokens.set.Load().Authenticate(strings.TrimSpace(tok))
	if !ok || !found || c.Scope != auth.Fetch && c.Scope != auth.Admin {
		w.Header().Set("WWW-Authenticate", `Basic realm="walstored status: a fetch or admin token as the password", charset="UTF-8"`)
		s.failStatus(w, r, http.StatusUnauthorized, "unauthorized", "the status page needs a fetch or admin token (as the password)")
		return nil, false
	}
	note(r, "client", c.Name)
	return func(a string) bool { return c.Allows(auth.OpGet, a) }, true
}

// statusView is what the page shows.
type statusView struct {
	// Only is the one archive asked for (GET /?archive=NAME), "" for all.
	Only     string
	Now      time.Time
	Scanned  time.Time
	Archives []archiveView
	Stores   []store.Health
}

type archiveView struct {
	S       catalog.Summary
	P       catalog.Picture
	Drill   *drillView
	Chart   svgChart
	Hourly  []svgBar
	Sizes   []svgBar
	MaxHour int64
	// HourAxis and SizeAxis label the small charts' axes: the top value,
	// and the first and last hour or backup shown.
	HourAxis, SizeAxis chartAxis
	Error              string
	// Cut is where retention cuts next (nil if it never ran).
	Cut *retentionCut
	// Receiver is the archive's WAL receiver (walstored serve --receive),
	// nil without one.
	Receiver *receiver.Status
}

type drillView struct {
	OK      bool
	At      time.Time
	Seconds float64
	Backup  string
	Error   string
	// Removed: retention has removed the backup the drill restored since.
	Removed bool
}

// liveSummary brings a summary from the last scan up to what walstored
// saw pass its door since: the newest segment, its timeline (a promotion
// shows at its first segment, not at the next scan) and when it came.
func (s *Server) liveSummary(sum *catalog.Summary) {
	n, segSize, at, ok := s.metrics.lastPushOf(sum.Archive)
	if !ok {
		return
	}
	cur, err := wal.ParseName(sum.NewestSegment)
	if err == nil && segSize == sum.SegmentSize && (n.SegNo(segSize) < cur.SegNo(segSize) || n.SegNo(segSize) == cur.SegNo(segSize) && n.TLI <= cur.TLI) {
		return
	}
	if err != nil && sum.NewestSegment != "" {
		return
	}
	sum.NewestSegment, sum.NewestTimeline = n.String(), n.TLI
	sum.NewestLSN = n.StartLSN(segSize) + wal.LSN(segSize)
	if at.After(sum.NewestWALTime.Time) {
		sum.NewestWALTime = catalog.NullTime{Time: at}
	}
}

func (s *Server) statusView(visible func(string) bool) statusView {
	at, all := s.scan.snapshot()
	v := statusView{Now: time.Now(), Scanned: at}
	for _, st := range all {
		if !visible(st.Summary.Archive) {
			continue
		}
		av := archiveView{S: st.Summary, P: st.Picture}
		s.liveSummary(&av.S)
		if st.Err != nil {
			av.Error = st.Err.Error()
		}
		if d := st.Drill; d != nil {
			av.Drill = &drillView{OK: d.OK, At: d.Started, Seconds: d.Seconds, Backup: d.Backup, Error: d.Error}
			av.Drill.Removed = !slices.ContainsFunc(st.Picture.Backups, func(b catalog.PictureBackup) bool { return b.ID == d.Backup })
		}
		av.Chart = timelineChart(st.Picture, st.Summary, st.Cut)
		av.Cut = st.Cut
		av.Hourly, av.MaxHour = hourBars(st.Picture)
		av.Sizes = sizeBars(st.Picture)
		av.HourAxis, av.SizeAxis = chartAxes(st.Picture, av.MaxHour)
		if rc := s.cfg.Receivers[st.Summary.Archive]; rc != nil {
			rs := rc.Status()
			av.Receiver = &rs
		}
		v.Archives = append(v.Archives, av)
	}
	// A receiver whose archive holds nothing yet (or was not scanned yet)
	// is shown too: its trouble is the reason the archive is empty.
	for name, rc := range s.cfg.Receivers {
		if !visible(name) || slices.ContainsFunc(v.Archives, func(a archiveView) bool { return a.S.Archive == name }) {
			continue
		}
		rs := rc.Status()
		v.Archives = append(v.Archives, archiveView{
			S:        catalog.Summary{Archive: name, State: "empty", Reasons: []string{"nothing stored yet (or not scanned yet)"}, DeadBranches: []uint32{}, Retired: []uint32{}},
			Receiver: &rs,
		})
	}
	v.Stores = store.HealthOf(s.cfg.Store)
	var stored int64
	for _, a := range v.Archives {
		stored += a.S.WALBytes + a.S.BackupBytes
	}
	for i := range v.Stores {
		v.Stores[i].StoredBytes = stored
	}
	if _, multi := store.As[store.Reporter](s.cfg.Store); !multi && len(v.Stores) == 1 {
		// One store: it is up as far as the last scan could list it.
		if err := s.scan.lastListErr(); err != nil {
			v.Stores[0].Up, v.Stores[0].LastError = false, err.Error()
		} else if !at.IsZero() {
			v.Stores[0].LastOK = at
		}
	}
	return v
}

// storesFor is the stores' health as client c may see it: store names
// (paths, buckets, endpoints) and errors (which name them) are the
// storage side's layout, for admin only; others see "store 1", "store 2"
// and whether each is up.
func storesFor(c *auth.Client, tokens bool, h []store.Health) []store.Health {
	if !tokens || c != nil && c.Scope == auth.Admin {
		return h
	}
	out := make([]store.Health, len(h))
	for i, st := range h {
		out[i] = store.Health{Name: fmt.Sprintf("store %d", i+1), Up: st.Up, LastOK: st.LastOK, Owed: st.Owed, StoredBytes: st.StoredBytes, FreeBytes: st.FreeBytes, CapacityBytes: st.CapacityBytes}
		if !st.Up {
			out[i].LastError = "down (an admin token shows why)"
		}
	}
	return out
}

// clientOf is the request's client by its token (bearer, or the status
// page's basic-auth password); nil without a valid one.
func (s *Server) clientOf(r *http.Request) *auth.Client {
	if s.cfg.Tokens == nil {
		return nil
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		_, tok, ok = r.BasicAuth()
	}
	if !ok {
		return nil
	}
	c, found := s.cfg.Tokens.set.Load().Authenticate(strings.TrimSpace(tok))
	if !found {
		return nil
	}
	return c
}

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	visible, ok := s.statusReader(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	only := r.URL.Query().Get("archive")
	if only != "" {
		all := visible
		visible = func(a string) bool { return a == only && all(a) }
	}
	v := s.statusView(visible)
	v.Only = only
	v.Stores = storesFor(s.clientOf(r), s.cfg.Tokens != nil, v.Stores)
	if err := statusTmpl.Execute(w, v); err != nil {
		s.log.Warn("status page", "error", err.Error())
	}
}

func (s *Server) statusJSON(w http.ResponseWriter, r *http.Request) {
	visible, ok := s.statusReader(w, r)
	if !ok {
		return
	}
	v := s.statusView(visible)
	v.Stores = storesFor(s.clientOf(r), s.cfg.Tokens != nil, v.Stores)
	type archiveJSON struct {
		Summary  catalog.Summary  `json:"summary"`
		Picture  catalog.Picture  `json:"picture"`
		Drill    *drillView       `json:"last_drill"`
		Cut      *retentionCut    `json:"retention_next_cut"`
		Receiver *receiver.Status `json:"receiver"`
	}
	out := struct {
		Scanned  catalog.NullTime `json:"scanned_at"`
		Archives []archiveJSON    `json:"archives"`
		Stores   []store.Health   `json:"stores"`
	}{Scanned: catalog.NullTime{Time: v.Scanned}, Archives: []archiveJSON{}, Stores: v.Stores}
	if out.Stores == nil {
		out.Stores = []store.Health{}
	}
	for _, a := range v.Archives {
		out.Archives = append(out.Archives, archiveJSON{a.S, a.P, a.Drill, a.Cut, a.Receiver})
	}
	writeJSON(w, http.StatusOK, out)
}

// ago says how long ago t was, for people.
func ago(t time.Time) string {
	switch d := time.Since(t); {
	case t.IsZero():
		return "never"
	case d < 0:
		return "now"
	default:
		return units.Age(d) + " ago"
	}
}

// The time-line chart: a row of backups, a row per timeline, the
// recovery window shaded, gaps and forks marked.
const (
	chartW     = 960
	chartLeft  = 110
	rowH       = 26
	chartRight = 20
)

type svgChart struct {
	W, H    int
	Rows    []svgRow
	Bars    []svgBar // backups
	Runs    []svgBar // WAL runs
	Gaps    []svgMark
	Forks   []svgMark
	Window  *svgBar
	Cut     *svgMark // retention's next cut
	Ticks   []svgTick
	AxisY   int
	PlotW   int
	PlotX   int
	Nothing bool
}

type svgRow struct {
	Y     int
	Label string
	Class string
}

type svgBar struct {
	X, Y, W, H int
	Class      string
	Title      string
	ID         string // data-id
	Label      string
}

type svgMark struct {
	X, Y1, Y2 int
	Class     string
	Title     string
	ID        string
}

type svgTick struct {
	X      int
	Label  string
	Anchor string // text-anchor: the first and last labels stay inside the chart
}

func timelineChart(p catalog.Picture, s catalog.Summary, cut *retentionCut) svgChart {
	c := svgChart{W: chartW, PlotX: chartLeft, PlotW: chartW - chartLeft - chartRight}
	from, to := p.From.Time, p.To.Time
	if from.IsZero() || !to.After(from) || len(p.Backups) == 0 && len(p.Timelines) == 0 {
		c.Nothing, c.H = true, rowH
		return c
	}
	span := to.Sub(from)
	from = from.Add(-span / 50) // a margin, so that the first bar is visible
	span = to.Sub(from)
	x := func(t time.Time) int {
		if t.Before(from) {
			t = from
		}
		if t.After(to) {
			t = to
		}
		return chartLeft + int(float64(c.PlotW)*float64(t.Sub(from))/float64(span))
	}
	y := 8
	c.Rows = append(c.Rows, svgRow{Y: y, Label: "backups", Class: "row-backups"})
	for _, b := range p.Backups {
		x0, x1 := x(b.Start), x(b.Stop)
		c.Bars = append(c.Bars, svgBar{X: x0, Y: y + 4, W: max(3, x1-x0), H: rowH - 8, Class: "backup", ID: b.ID,
			Title: fmt.Sprintf("backup %s, timeline %d, %s → %s, %s (%s stored)", b.ID, b.Timeline, b.Start.UTC().Format(time.RFC3339), b.Stop.UTC().Format(time.RFC3339), units.Size(b.RawSize), units.Size(b.StoredSize))})
	}
	rowOf := map[uint32]int{}
	for _, t := range p.Timelines {
		y += rowH
		rowOf[t.Timeline] = y
		class := "row-timeline"
		label := fmt.Sprintf("timeline %d", t.Timeline)
		if t.Dead {
			class, label = "row-timeline dead", label+" (dead)"
		}
		c.Rows = append(c.Rows, svgRow{Y: y, Label: label, Class: class})
		for _, r := range t.Runs {
			x0, x1 := x(r.From), x(r.To)
			cls := "run"
			if t.Dead {
				cls = "run dead"
			}
			c.Runs = append(c.Runs, svgBar{X: x0, Y: y + 6, W: max(2, x1-x0), H: rowH - 12, Class: cls, ID: r.First,
				Title: fmt.Sprintf("timeline %d: %s .. %s (%d segments), %s → %s", t.Timeline, r.First, r.Last, r.Segments, r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339))})
		}
		for _, g := range t.Gaps {
			c.Gaps = append(c.Gaps, svgMark{X: x(g.At), Y1: y + 1, Y2: y + rowH - 1, Class: "gap", ID: g.First,
				Title: fmt.Sprintf("gap on timeline %d: %s .. %s missing (%d segments)", t.Timeline, g.First, g.Last, g.Missing)})
		}
	}
	for _, f := range p.Forks {
		y1, y2 := rowOf[f.Parent], rowOf[f.Child]
		if y2 < y1 {
			y1, y2 = y2, y1
		}
		cls := "fork"
		if f.DeadChild || f.Both {
			cls = "fork dead"
		}
		c.Forks = append(c.Forks, svgMark{X: x(f.AtTime), Y1: y1 + rowH/2, Y2: y2 + rowH/2, Class: cls, ID: fmt.Sprint(f.Child), Title: f.Text})
	}
	// A timeline switch that is not a fork (the parent stopped there: a
	// promotion after a failover) is drawn too: where the new timeline
	// began.
	for _, t := range p.Timelines {
		if t.Parent == 0 || t.Began.IsZero() || slices.ContainsFunc(p.Forks, func(f catalog.PictureFork) bool { return f.Child == t.Timeline }) {
			continue
		}
		y1, y2 := rowOf[t.Parent], rowOf[t.Timeline]
		if y1 == 0 {
			y1 = y2 // the parent's WAL is gone (retention): a tick on the child's row
		}
		if y2 < y1 {
			y1, y2 = y2, y1
		}
		c.Forks = append(c.Forks, svgMark{X: x(t.Began), Y1: y1 + rowH/2 - 8, Y2: y2 + rowH/2 + 8, Class: "fork switch", ID: fmt.Sprint(t.Timeline),
			Title: fmt.Sprintf("timeline %d began at %s, after timeline %d (a promotion or the end of a recovery; timeline %d did not go on)", t.Timeline, t.SwitchPoint, t.Parent, t.Parent)})
	}
	c.AxisY = y + rowH + 4
	c.H = c.AxisY + 22
	if !s.RecoverableFrom.IsZero() && !s.RecoverableTo.IsZero() {
		x0, x1 := x(s.RecoverableFrom.Time), x(s.RecoverableTo.Time)
		c.Window = &svgBar{X: x0, Y: 4, W: max(2, x1-x0), H: c.AxisY - 4, Class: "window",
			Title: fmt.Sprintf("recoverable from %s to %s", s.RecoverableFrom.UTC().Format(time.RFC3339), s.RecoverableTo.UTC().Format(time.RFC3339))}
	}
	if cut != nil && !cut.At.IsZero() {
		what := "nothing else"
		if len(cut.Expires) > 0 {
			what = "backups " + strings.Join(cut.Expires, ", ")
		}
		c.Cut = &svgMark{X: x(cut.At), Y1: 2, Y2: c.AxisY, Class: "cut", ID: cut.OldestKept,
			Title: fmt.Sprintf("retention's next cut (keep-last %d, keep-within %s, as last run %s): keeps backup %s and the WAL from %s on; removes %s and the WAL before",
				cut.KeepLast, cut.KeepWithin, cut.LastRun.UTC().Format(time.RFC3339), cut.OldestKept, cut.KeepFrom, what)}
	}
	layout := "01-02 15:04"
	switch {
	case span < 10*time.Minute:
		layout = "15:04:05"
	case span < 24*time.Hour:
		layout = "15:04"
	}
	for i := 0; i <= 4; i++ {
		t := from.Add(span * time.Duration(i) / 4)
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case 4:
			anchor = "end"
		}
		c.Ticks = append(c.Ticks, svgTick{X: x(t), Label: t.UTC().Format(layout), Anchor: anchor})
	}
	return c
}

// hourBars is the WAL-per-hour chart (48 bars).
func hourBars(p catalog.Picture) ([]svgBar, int64) {
	var top int64 = 1
	for _, h := range p.WALPerHour {
		top = max(top, h.Bytes)
	}
	var out []svgBar
	const w, h = 10, 60
	for i, hb := range p.WALPerHour {
		bh := int(float64(h) * float64(hb.Bytes) / float64(top))
		out = append(out, svgBar{X: barsLeft + i*(w+2), Y: h - bh, W: w, H: max(bh, 0), Class: "hour",
			Title: fmt.Sprintf("%s: %s", hb.Hour.UTC().Format("01-02 15:00"), units.Size(hb.Bytes))})
	}
	return out, top
}

// chartAxis is what a small chart's axes say.
type chartAxis struct {
	Top, First, Last string
	LastX            int // where the last label ends (under the last bar)
	Empty            bool
}

// barsLeft is where the small charts' bars start: room for the value axis.
const barsLeft = 60

func chartAxes(p catalog.Picture, maxHour int64) (hours, sizes chartAxis) {
	hours.Empty = len(p.WALPerHour) == 0
	if !hours.Empty {
		hours.Top = units.Size(maxHour)
		hours.First = p.WALPerHour[0].Hour.UTC().Format("01-02 15:00")
		hours.Last = p.WALPerHour[len(p.WALPerHour)-1].Hour.UTC().Format("01-02 15:00") + " UTC"
		hours.LastX = barsLeft + len(p.WALPerHour)*12 - 2
	}
	sizes.Empty = len(p.Backups) == 0
	if !sizes.Empty {
		var top int64
		for _, b := range p.Backups {
			top = max(top, b.RawSize)
		}
		sizes.Top = units.Size(top)
		sizes.First = p.Backups[0].Start.UTC().Format("01-02 15:04")
		if n := len(p.Backups); n > 3 {
			sizes.Last = p.Backups[n-1].Start.UTC().Format("01-02 15:04")
			sizes.LastX = barsLeft + (n-1)*20 + 16
		}
	}
	return hours, sizes
}

// sizeBars is the backup-size chart (raw and stored per backup).
func sizeBars(p catalog.Picture) []svgBar {
	var top int64 = 1
	for _, b := range p.Backups {
		top = max(top, b.RawSize)
	}
	var out []svgBar
	const w, h = 16, 60
	for i, b := range p.Backups {
		rh := int(float64(h) * float64(b.RawSize) / float64(top))
		sh := int(float64(h) * float64(b.StoredSize) / float64(top))
		out = append(out, svgBar{X: barsLeft + i*(w+4), Y: h - rh, W: w, H: rh, Class: "size-raw", ID: b.ID, Title: fmt.Sprintf("%s: %s raw", b.ID, units.Size(b.RawSize))})
		out = append(out, svgBar{X: barsLeft + i*(w+4), Y: h - sh, W: w, H: sh, Class: "size-stored", ID: b.ID, Title: fmt.Sprintf("%s: %s stored", b.ID, units.Size(b.StoredSize))})
	}
	return out
}
