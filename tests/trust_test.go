package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/tests/testenv"
	"github.com/walstore/walstore/wal"
	"github.com/walstore/walstore/wal/waltest"
)

// tokenSite is a walstored on a file store with a push, a fetch, a
// metrics and an admin token, and a primary archiving with the push
// token.
type tokenSite struct {
	site
	push, fetch, metrics, admin string // tokens
	pushFile, adminFile         string
}

func newTokenSite(t *testing.T) tokenSite {
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	var ts tokenSite
	var lines []string
	for _, c := range []struct {
		name, scope string
		tok         *string
	}{{"db1", "push", &ts.push}, {"standby", "fetch", &ts.fetch}, {"prometheus", "metrics", &ts.metrics}, {"ops", "admin", &ts.admin}} {
		tok, line := mintToken(t, c.name, c.scope, "*")
		*c.tok = tok
		lines = append(lines, line)
	}
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir, "--tokens", tokens)
	ts.pushFile, ts.adminFile = tokenFile(t, dir, "push", ts.push), tokenFile(t, dir, "admin", ts.admin)
	r := repo{url: ws.URL, extra: []string{"--token-file", ts.pushFile}}
	p := archivingCluster(t, dir, "primary", r, 1)
	p.Start()
	p.Exec(ledgerDDL)
	ts.site = site{dir: dir, repoDir: repoDir, ws: ws, r: r, p: p}
	return ts
}

func (ts tokenSite) adminRepo() repo {
	return repo{url: ts.ws.URL, extra: []string{"--token-file", ts.adminFile}}
}

func (ts tokenSite) client(t *testing.T, token string) *httpstore.Store {
	hs, err := httpstore.New(ts.ws.URL, httpstore.Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// The forgery of issue 12: a push token writes a fake completion record
// and fake labels. Every write that retention or restore would trust is
// refused with 403 naming the scope and the key; what a push token may
// write (a .backup label under a free name) misleads nothing: the admin
// timer's retain keeps the real backups and their WAL, and a restore of
// latest picks the real newest backup.
func TestPushTokenCannotForgeHistory(t *testing.T) {
	t.Parallel()
	ts := newTokenSite(t)
	p, admin := ts.p, ts.adminRepo()
	insertBatch(p, 0, 2000)
	b1 := takeBackup(t, admin, p)
	insertBatch(p, 1, 2000)
	p.SwitchWAL()
	b2 := takeBackup(t, admin, p)
	insertBatch(p, 2, 1000)
	last := p.SwitchWAL()
	p.WaitArchived(last, time.Minute)
	ctx := context.Background()
	pusher := ts.client(t, ts.push)
	forged, _ := envelope.NewEncoder().EncodeBytes([]byte(`{"id":"29990101T000000Z","archive":"main","stop_time":"2999-01-01T00:00:00Z"}`), "main/backups/29990101T000000Z/backup.json")
	for _, key := range []string{"main/backups/29990101T000000Z/backup.json", "main/meta/system", "main/retired/00000002/retired.json"} {
		err := pusher.Put(ctx, key, store.Bytes(forged.Bytes()))
		if !errkind.Permanent(err) || !strings.Contains(err.Error(), "scope push") || !strings.Contains(err.Error(), key) {
			t.Errorf("push token writing %s: %v, want 403 naming the scope and the key", key, err)
		}
	}
	if err := pusher.Delete(ctx, "main/wal/"+last); err == nil || !strings.Contains(err.Error(), "may not delete") {
		t.Errorf("push token deleting: %v", err)
	}
	// A well-formed label under a free name (a future backup's) is WAL, and
	// accepted; a label under a taken name is a conflict.
	label := "START WAL LOCATION: 0/7F000028 (file 00000001000000000000007F)\nSTOP WAL LOCATION: 0/7F000100 (file 00000001000000000000007F)\nCHECKPOINT LOCATION: 0/7F000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2999-01-01 00:00:00 UTC\nLABEL: walstore 29990101T000000Z\nSTART TIMELINE: 1\nSTOP TIME: 2999-01-01 00:00:01 UTC\nSTOP TIMELINE: 1\n"
	lf := filepath.Join(testenv.Dir(t), "00000001000000000000007F.00000028.backup")
	os.WriteFile(lf, []byte(label), 0o644)
	if res := testenv.Run(t, ts.dir, nil, testenv.Binaries(t).WalPush, ts.r.args("--jobs", "1", lf)...); res.Code != 0 {
		t.Fatalf("a label under a free name: exit %d %s", res.Code, res.Stderr)
	}
	before := len(storeKeys(t, openRepo(t, ts.repoDir), "main/wal/"))
	res := admin.run(t, "retain", "--keep-last", "1", "--json")
	var out struct {
		Kept    []string `json:"kept_backups"`
		Deleted []string `json:"deleted_backups"`
	}
	json.Unmarshal([]byte(res.Stdout), &out)
	if res.Code != 0 || strings.Join(out.Kept, ",") != b2 || strings.Join(out.Deleted, ",") != b1 {
		t.Fatalf("retain: exit %d %s %s", res.Code, res.Stdout, res.Stderr)
	}
	after := len(storeKeys(t, openRepo(t, ts.repoDir), "main/wal/"))
	if after == 0 || after >= before {
		t.Fatalf("retain left %d of %d WAL files", after, before)
	}
	if v := admin.run(t, "verify"); v.Code != 0 {
		t.Fatalf("verify after retain: exit %d %s %s", v.Code, v.Stdout, v.Stderr)
	}
	dry := testenv.Run(t, ts.dir, nil, testenv.Binaries(t).WalFetch, append([]string{"restore", "--dry-run", "--owner", "postgres", "--pgdata", filepath.Join(ts.dir, "x")}, admin.args()...)...)
	if !strings.Contains(dry.Stdout, "would restore backup "+b2) {
		t.Fatalf("restore latest: %s %s", dry.Stdout, dry.Stderr)
	}
}

// run runs a walstored admin command against r.
func (r repo) run(t *testing.T, args ...string) testenv.Result {
	t.Helper()
	return admin(t, r, args...)
}

func openRepo(t *testing.T, dir string) store.Store {
	fs, err := filestore.Open(dir, filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// writeSegment writes a synthetic segment of system sysid to dir.
func writeSegment(t *testing.T, dir string, n wal.Name) string {
	p := filepath.Join(dir, n.String())
	if err := os.WriteFile(p, waltest.Segment(waltest.SystemID, n, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A copy damaged on disk is repaired by walpush pushing the same content
// again, atomically, counted and logged; a copy that verifies is never
// touched.
func TestDamagedCopyRepairedByTheNextPush(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir, "--cache-size", "0")
	n := waltest.Name("000000010000000000000004")
	seg := writeSegment(t, testenv.Dir(t), n)
	args := []string{"--repo", ws.URL, "--archive", "synthetic", "--jobs", "1", "-v", seg}
	if res := testenv.Run(t, dir, nil, bins.WalPush, args...); res.Code != 0 {
		t.Fatalf("push: %d %s", res.Code, res.Stderr)
	}
	stored := filepath.Join(repoDir, "synthetic", "wal", n.String())
	b, _ := os.ReadFile(stored)
	b[len(b)-1000] ^= 0x10
	os.WriteFile(stored, b, 0o640)
	fetchArgs := []string{"--repo", ws.URL, "--archive", "synthetic", "--timeout", "5s", n.String(), filepath.Join(testenv.Dir(t), "x")}
	if res := testenv.Run(t, dir, nil, bins.WalFetch, fetchArgs...); res.Code != 3 || !strings.Contains(res.Stderr, "corrupt") {
		t.Fatalf("fetch of the damaged copy: %d %s", res.Code, res.Stderr)
	}
	res := testenv.Run(t, dir, nil, bins.WalPush, args...)
	if res.Code != 0 || !strings.Contains(res.Stderr, "repaired") {
		t.Fatalf("push over a damaged copy: exit %d %q, want 0 and \"repaired\"", res.Code, res.Stderr)
	}
	if res := testenv.Run(t, dir, nil, bins.WalFetch, fetchArgs...); res.Code != 0 {
		t.Fatalf("fetch after the repair: %d %s", res.Code, res.Stderr)
	}
	if !strings.Contains(ws.Log(), "repaired a damaged copy") || !strings.Contains(metricsText(t, ws.URL, ""), `walstore_repaired_objects_total{archive="synthetic"} 1`) {
		t.Fatal("the repair is not in the log or the metrics")
	}
	if res := testenv.Run(t, dir, nil, bins.WalPush, args...); res.Code != 0 || !strings.Contains(res.Stderr, "already archived") {
		t.Fatalf("push over the intact copy: exit %d %q", res.Code, res.Stderr)
	}
}

func metricsText(t *testing.T, url, token string) string {
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Sprintf("HTTP %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// An encrypted history file copied over another in the store is refused
// by walfetch and by verify, with or without the key: the name is in the
// header and in every chunk's authenticated data.
func TestSwappedEncryptedObjectsAreCorrupt(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	repoDir := filepath.Join(dir, "repo")
	// No cache: what is read must come from the store, where the test swaps
	// the files.
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+repoDir, "--cache-size", "0")
	key := filepath.Join(dir, "k")
	os.WriteFile(key, []byte(testenv.Run(t, dir, nil, bins.WalStored, "key").Stdout), 0o600)
	src := testenv.Dir(t)
	h2 := filepath.Join(src, "00000002.history")
	h3 := filepath.Join(src, "00000003.history")
	os.WriteFile(h2, waltest.History(wal.HistoryEntry{TLI: 1, SwitchPoint: 0x3000000}), 0o644)
	os.WriteFile(h3, waltest.History(wal.HistoryEntry{TLI: 1, SwitchPoint: 0x3000000}, wal.HistoryEntry{TLI: 2, SwitchPoint: 0x5000000}), 0o644)
	r := repo{url: ws.URL, extra: []string{"--encryption-key-file", key}}
	for _, f := range []string{writeSegment(t, src, waltest.Name("000000010000000000000002")), h2, h3} {
		if res := testenv.Run(t, dir, nil, bins.WalPush, r.args("--jobs", "1", f)...); res.Code != 0 {
			t.Fatalf("push %s: %d %s", f, res.Code, res.Stderr)
		}
	}
	stored := filepath.Join(repoDir, "main", "wal")
	b, _ := os.ReadFile(filepath.Join(stored, "00000002.history"))
	os.Remove(filepath.Join(stored, "00000003.history"))
	os.WriteFile(filepath.Join(stored, "00000003.history"), b, 0o640)
	res := testenv.Run(t, dir, nil, bins.WalFetch, r.args("--timeout", "5s", "00000003.history", filepath.Join(testenv.Dir(t), "h"))...)
	if res.Code == 0 || res.Code == 1 || !strings.Contains(res.Stderr, "corrupt") {
		t.Fatalf("fetch of a swapped history file: exit %d %s", res.Code, res.Stderr)
	}
	for _, withKey := range []bool{true, false} {
		vr := repo{url: ws.URL}
		if withKey {
			vr = r
		}
		v := admin(t, vr, "verify")
		if v.Code != 1 || !strings.Contains(v.Stdout, "00000003.history") || !strings.Contains(v.Stdout, "00000002.history") {
			t.Fatalf("verify (key %v) with a swapped history: exit %d\n%s%s", withKey, v.Code, v.Stdout, v.Stderr)
		}
	}
}

// History files are checked at the door: junk, and a history whose parent
// timeline the archive does not have, are refused; a well-formed history
// that forks a timeline in the past is accepted, and verify reports the
// dead branch and fails.
func TestHistoryFilesCheckedAtTheDoor(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	st := newSite(t, 1)
	insertBatch(st.p, 0, 2000)
	takeBackup(t, st.r, st.p)
	for i := 1; i <= 3; i++ {
		insertBatch(st.p, i, 2000)
		st.p.SwitchWAL()
	}
	st.p.WaitArchived(st.p.SwitchWAL(), time.Minute)
	hs, _ := httpstore.New(st.ws.URL, httpstore.Options{})
	ctx := context.Background()
	junk, _ := envelope.NewEncoder().EncodeBytes([]byte("this is not a history file\n"), "main/wal/0000000A.history")
	if err := hs.Put(ctx, "main/wal/0000000A.history", store.Bytes(junk.Bytes())); !errkind.Permanent(err) {
		t.Fatalf("junk history: %v, want a refusal", err)
	}
	src := testenv.Dir(t)
	orphan := filepath.Join(src, "00000006.history")
	os.WriteFile(orphan, waltest.History(wal.HistoryEntry{TLI: 1, SwitchPoint: 0x2000000}, wal.HistoryEntry{TLI: 5, SwitchPoint: 0x3000000}), 0o644)
	res := testenv.Run(t, src, nil, bins.WalPush, st.r.args("--jobs", "1", orphan)...)
	if res.Code != 1 || !strings.Contains(res.Stderr, "00000005.history") {
		t.Fatalf("history naming a parent the archive lacks: exit %d %s", res.Code, res.Stderr)
	}
	// A fake timeline 2 forked long ago: accepted (it is well formed), but
	// it is a dead branch, and verify says so and fails.
	fake := filepath.Join(src, "00000002.history")
	os.WriteFile(fake, waltest.History(wal.HistoryEntry{TLI: 1, SwitchPoint: 0x200000}), 0o644) // segment 2 (1 MiB segments)
	if res := testenv.Run(t, src, nil, bins.WalPush, st.r.args("--jobs", "1", fake)...); res.Code != 0 {
		t.Fatalf("a well-formed fake history: exit %d %s", res.Code, res.Stderr)
	}
	v := admin(t, st.r, "verify")
	if v.Code != 1 || !strings.Contains(v.Stdout, "dead branch") || !strings.Contains(v.Stdout, "timeline 2") {
		t.Fatalf("verify with a fake timeline 2: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
}

// Memory stays bounded under many large bodies: 64 concurrent 64 MiB
// segment bodies from one client keep walstored's peak RSS under its
// memory limit plus a fixed margin (the ones past the limit are told to
// retry); so do 1 GiB segments streamed to two stores at once.
func TestMemoryStaysBounded(t *testing.T) {
	// A zstd payload of 64 MiB whose frame declares a 64 MiB window (the
	// most the decoder takes): each stream's decoder holds that window.
	var zdigest envelope.Digest
	// 64 MiB of random bytes as one zstd frame that declares a 64 MiB
	// window: each stream's decoder holds that window and its payload is
	// 64 MiB too, as a hostile client can send.
	zpayload := func() []byte {
		raw := make([]byte, 64<<20)
		r := mathrand.New(mathrand.NewPCG(1, 2))
		for i := 0; i+8 <= len(raw); i += 8 {
			binary.LittleEndian.PutUint64(raw[i:], r.Uint64())
		}
		zdigest = sha256.Sum256(raw)
		var buf bytes.Buffer
		zw, _ := zstd.NewWriter(&buf, zstd.WithWindowSize(64<<20), zstd.WithEncoderLevel(zstd.SpeedFastest))
		zw.Write(raw)
		zw.Close()
		return buf.Bytes()
	}()
	for _, tc := range []struct {
		name     string
		stores   int
		segSize  int64
		n        int
		zstd     bool
		defaults bool // walstored's default limits (512 MiB, a 256 MiB cache)
	}{{"64x64MiB", 1, 64 << 20, 64, false, false}, {"two-stores-1GiB", 2, 1 << 30, 3, false, false},
		{"64x64MiB-streamed-zstd", 1, 64 << 20, 64, true, false}, {"64x64MiB-streamed-zstd-two-stores", 2, 64 << 20, 64, true, false},
		{"defaults-64x64MiB-zstd", 1, 64 << 20, 64, true, true}, {"defaults-64x64MiB-zstd-two-stores", 2, 64 << 20, 64, true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testenv.Dir(t)
			limit, cache := int64(128<<20), int64(0)
			args := []string{"--memory-limit", "128MiB", "--cache-size", "0"}
			if tc.defaults {
				limit, cache, args = 512<<20, 256<<20, nil
			} else if tc.zstd {
				args = append(args, "--buffer-limit", "1MiB") // every body streams
			}
			for i := range tc.stores {
				args = append(args, "--store", fmt.Sprintf("file://%s/s%d", dir, i))
			}
			ws := testenv.StartWalstored(t, nil, args...)
			var wg sync.WaitGroup
			codes := make([]int, tc.n)
			for i := range tc.n {
				if tc.zstd {
					wg.Go(func() { codes[i] = putPayload(t, ws.URL, tc.segSize, i, zpayload, zdigest) })
					continue
				}
				wg.Go(func() { codes[i] = putZeros(t, ws.URL, tc.segSize, i) })
			}
			wg.Wait()
			peak := peakRSS(t, ws.PID())
			t.Logf("peak RSS %d MiB; answers %v", peak>>20, codes)
			// The README's bound: --memory-limit + --cache-size + 64 MiB
			// per core + 128 MiB.
			bound := limit + cache + int64(runtime.NumCPU())*64<<20 + 128<<20
			if peak > bound {
				t.Fatalf("peak RSS %d MiB, more than the README's bound of %d MiB", peak>>20, bound>>20)
			}
			for _, c := range codes {
				// 0: walstored answered 503 and closed the connection while
				// the client still sent its 64 MiB body, which the client
				// sees as a broken connection. Nothing was taken either way.
				if c != 0 && c != http.StatusUnprocessableEntity && c != http.StatusServiceUnavailable && c != http.StatusTooManyRequests && c != http.StatusBadRequest {
					t.Fatalf("answers %v: want 422 or 400 (the content does not verify or is not WAL) or 503 (over the budget)", codes)
				}
			}
		})
	}
}

// putZeros sends a segment body of size bytes of zeros under a valid
// header (so walstored takes it in, and refuses it at the end).
func putZeros(t *testing.T, url string, size int64, i int) int {
	n := wal.SegmentName(1, uint64(i+2), size)
	hdr := envelope.Header{Compression: envelope.NoCompression, RawSize: size, PayloadSize: size, SystemID: waltest.SystemID, Name: "mem/wal/" + n.String()}
	hb := hdr.Marshal()
	req, _ := http.NewRequest("PUT", url+"/v1/archives/mem/objects/wal/"+n.String(), io.MultiReader(bytes.NewReader(hb), io.LimitReader(zeros{}, size)))
	req.ContentLength = int64(len(hb)) + size
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// putPayload sends a zstd payload as a segment body of raw size bytes:
// its digests hold, its content is no WAL (the door refuses it at the end).
func putPayload(t *testing.T, url string, size int64, i int, payload []byte, digest envelope.Digest) int {
	n := wal.SegmentName(1, uint64(i+2), size)
	ps := sha256.Sum256(payload)
	hdr := envelope.Header{Version: envelope.Version, Compression: envelope.Zstd, RawSize: size, PayloadSize: int64(len(payload)), SystemID: waltest.SystemID, Name: "mem/wal/" + n.String(), PayloadDigest: envelope.Digest(ps), Digest: digest}
	hb := hdr.Marshal()
	req, _ := http.NewRequest("PUT", url+"/v1/archives/mem/objects/wal/"+n.String(), io.MultiReader(bytes.NewReader(hb), bytes.NewReader(payload)))
	req.ContentLength = int64(len(hb)) + int64(len(payload))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// peakRSS is a process's high-water mark of resident memory.
func peakRSS(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// /metrics and /v1/stores need a token of scope metrics or admin; error
// bodies name no path of the storage host.
func TestMetricsNeedATokenAndErrorsNameNoPaths(t *testing.T) {
	t.Parallel()
	ts := newTokenSite(t)
	for _, path := range []string{"/metrics", "/v1/stores"} {
		for token, want := range map[string]int{"": 401, ts.push: 403, ts.fetch: 403, ts.metrics: 200, ts.admin: 200} {
			req, _ := http.NewRequest("GET", ts.ws.URL+path, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want || resp.StatusCode == 200 && strings.Contains(string(b), ts.repoDir) && path == "/metrics" {
				t.Errorf("%s with token %.8s…: %d, want %d", path, token, resp.StatusCode, want)
			}
		}
	}
	adm := ts.client(t, ts.admin)
	ctx := context.Background()
	obj, _ := envelope.NewEncoder().EncodeBytes([]byte("x"), "main/backups/b1/k")
	for _, err := range []error{
		adm.Put(ctx, "main/backups/b1/other", store.Bytes(obj.Bytes())),
		func() error { _, err := adm.Get(ctx, "main/backups/b1/missing"); return err }(),
		adm.Delete(ctx, "main/wal/0000000100000000000000FF"),
	} {
		if err == nil || strings.Contains(err.Error(), ts.repoDir) || strings.Contains(err.Error(), "/tmp/") {
			t.Errorf("error %v names a path of the storage host", err)
		}
	}
}
