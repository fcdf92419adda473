package tests

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
)

// proxy is an HTTP proxy in front of walstored or MinIO that counts
// requests and can answer some of them 503 instead of passing them on.
type proxy struct {
	URL   string // http://127.0.0.1:port
	Addr  string // 127.0.0.1:port
	count atomic.Int64
	mu    sync.Mutex
	fail  func(r *http.Request) bool // answer 503 when it returns true
	log   []string
}

func newProxy(t *testing.T, target string) *proxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{}
	rp := httputil.NewSingleHostReverseProxy(u) // keeps the Host header: S3 signatures still match
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.count.Add(1)
		p.mu.Lock()
		p.log = append(p.log, r.Method+" "+r.URL.Path)
		fail := p.fail != nil && p.fail(r)
		p.mu.Unlock()
		if fail {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "injected by the test", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	p.Addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// requests returns the requests counted since the last call.
func (p *proxy) requests() (int64, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, log := p.count.Swap(0), p.log
	p.log = nil
	return n, log
}

// pushAsArchiveCommand pushes each segment as archive_command does: from
// a pg_wal directory, one call per file, no push-ahead.
func pushAsArchiveCommand(t *testing.T, r repo, segs []string) {
	t.Helper()
	bins := testenv.Binaries(t)
	pgdata := filepath.Join(testenv.Dir(t), "data")
	os.MkdirAll(filepath.Join(pgdata, "pg_wal"), 0o755)
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		os.WriteFile(filepath.Join(pgdata, "pg_wal", filepath.Base(s)), b, 0o600)
		res := testenv.Run(t, pgdata, r.env, bins.WalPush, r.args("--jobs", "1", "pg_wal/"+filepath.Base(s))...)
		if res.Code != 0 {
			t.Fatalf("push %s: %s", s, res.Stderr)
		}
	}
}

// The round-trip budget of a pushed segment (issue 15): one request
// through walstored; at most two direct to S3, once the repository's
// marker and conditional writes are proven and the binding is cached on
// the database host (the first call pays for those).
func TestRequestsPerSegment(t *testing.T) {
	t.Parallel()
	const n = 10
	segs := segmentFiles(t, n+1)
	t.Run("walstored", func(t *testing.T) {
		ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(testenv.Dir(t), "repo"))
		px := newProxy(t, ws.URL)
		r := repo{url: px.URL}
		pushAsArchiveCommand(t, r, segs[:1])
		px.requests()
		pushAsArchiveCommand(t, r, segs[1:])
		got, log := px.requests()
		t.Logf("walpush through walstored: %.2f requests per segment", float64(got)/n)
		if got > n {
			t.Fatalf("%d requests for %d segments through walstored, want one each:\n%s", got, n, strings.Join(log, "\n"))
		}
	})
	t.Run("s3", func(t *testing.T) {
		m := testenv.SharedMinIO(t)
		px := newProxy(t, "http://"+m.Endpoint)
		u := strings.Replace(m.URL("roundtrips"), "endpoint="+m.Endpoint, "endpoint="+px.Addr, 1)
		testenv.InitRepo(t, u, m.Env())
		r := repo{url: u, env: m.Env()}
		pushAsArchiveCommand(t, r, segs[:1])
		px.requests()
		pushAsArchiveCommand(t, r, segs[1:])
		got, log := px.requests()
		t.Logf("walpush direct to S3: %.2f requests per segment", float64(got)/n)
		if got > 2*n {
			t.Fatalf("%d requests for %d segments direct to S3, want at most two each:\n%s", got, n, strings.Join(log, "\n"))
		}
	})
}

// A base backup's pack upload that meets a 503 is sent again, and the
// backup completes and restores.
func TestBackupPackSurvivesA503(t *testing.T) {
	t.Parallel()
	dir := testenv.Dir(t)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"))
	px := newProxy(t, ws.URL)
	var failed atomic.Int64
	px.fail = func(r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/packs/") {
			return failed.Add(1) == 1
		}
		return false
	}
	r := repo{url: px.URL}
	p := archivingCluster(t, dir, "primary", repo{url: ws.URL}, 1)
	p.Start()
	p.Exec(ledgerDDL)
	insertBatch(p, 0, 2000)
	id := takeBackup(t, r, p)
	if failed.Load() < 2 {
		t.Fatalf("the 503 was not injected (%d pack uploads seen)", failed.Load())
	}
	rows := p.QueryInt("SELECT count(*) FROM ledger")
	archivedTo(t, p)
	p.Stop()
	c := restore(t, repo{url: ws.URL}, dir, "restored", "--backup", id)
	c.AutoConf("archive_mode = off")
	c.Start()
	c.WaitRecovered(2 * time.Minute)
	if got := c.QueryInt("SELECT count(*) FROM ledger"); got != rows {
		t.Fatalf("restored %d rows, want %d", got, rows)
	}
}
