package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/tests/testenv"
)

// floors measures, in this process and on one core, the work a push and
// a fetch cannot avoid for each segment (issue 19): push = encode at the
// push level (zstd and SHA-256 of the raw bytes, SHA-256 of the payload)
// plus the door's check in walstored (decode, SHA-256 of the payload and
// of the raw bytes, as envelope.VerifyPayloadBytes runs it); fetch = the
// streamed decode and SHA-256 that walfetch runs. CPU time per segment,
// in a warm process (no fresh pages): the figures the table's CPU columns
// compare to.
func floors(b *testing.B, w workload) (push, fetch time.Duration) {
	enc := envelope.NewEncoder()
	for _, s := range w.segs {
		raw, err := os.ReadFile(s)
		if err != nil {
			b.Fatal(err)
		}
		name := "bench/wal/" + filepath.Base(s)
		var obj *envelope.Object
		push += cpuOf(func() {
			obj, err = enc.EncodeBytes(raw, name)
			if err == nil {
				err = envelope.VerifyPayloadBytes(obj.Header, obj.Bytes()[obj.Header.Size():], nil)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		fetch += cpuOf(func() { err = decodeAll(obj.Bytes(), name) })
		if err != nil {
			b.Fatal(err)
		}
	}
	n := time.Duration(len(w.segs))
	return push / n, fetch / n
}

func decodeAll(buf []byte, name string) error {
	_, rc, err := envelope.Open(bytes.NewReader(buf), name, nil)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// cpuOf is the CPU time of this process while f runs (f runs alone).
func cpuOf(f func()) time.Duration {
	before := processCPU()
	f()
	return processCPU() - before
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// zstdSizes is what the zstd command stores for each segment at level.
func zstdSizes(b *testing.B, w workload, level int) int64 {
	var total int64
	for _, s := range w.segs {
		out, err := exec.Command("zstd", fmt.Sprintf("-%d", level), "-q", "-c", s).Output()
		if err != nil {
			b.Fatalf("zstd -%d %s: %v (install the zstd package)", level, s, err)
		}
		total += int64(len(out))
	}
	return total
}

// recompressReport is the part of walstored recompress --json we print.
type recompressReport struct {
	Recompressed int     `json:"objects_recompressed"`
	BytesBefore  int64   `json:"bytes_before"`
	BytesAfter   int64   `json:"bytes_after"`
	RawBytes     int64   `json:"raw_bytes"`
	Seconds      float64 `json:"seconds"`
}

// recompressArchive runs walstored recompress over one archive of a file
// store and returns its report and the CPU it took.
func recompressArchive(b *testing.B, repoDir, archive string) (recompressReport, time.Duration) {
	var rep recompressReport
	c0 := testenv.ChildrenCPU()
	res := testenv.Run(b, testenv.Dir(b), nil, testenv.Binaries(b).WalStored, "recompress", "--store", "file://"+repoDir, "--archive", archive, "--min-age", "0", "--json")
	if res.Code != 0 || json.Unmarshal([]byte(res.Stdout), &rep) != nil {
		b.Fatalf("walstored recompress: exit %d: %s%s", res.Code, res.Stdout, res.Stderr)
	}
	return rep, testenv.ChildrenCPU() - c0
}

// BenchmarkAtRest prints what recompression saves on WAL that compresses
// well (pgbench and hex text, no random bytes), against the zstd command
// on the same segments, and what fetching costs before and after.
func BenchmarkAtRest(b *testing.B) {
	if b.N > 1 {
		b.Skip("one measured run per invocation (use -benchtime 1x)")
	}
	const n = 32
	bins := testenv.Binaries(b)
	b.Logf("generating %d segments of text-heavy WAL...", n)
	w := makeWorkloadOf(b, n, false)
	repoDir := filepath.Join(testenv.Dir(b), "repo")
	ws := testenv.StartWalstored(b, nil, "--store", "file://"+repoDir, "--log-level", "warn")
	for _, s := range w.segs {
		sh(b, filepath.Dir(s), fmt.Sprintf("%s --repo %s --archive text --jobs 1 %s", bins.WalPush, ws.URL, s))
	}
	fetch := func() row {
		return measure(ws, func() {
			fetchAll(b, emptyPGData(b), w.segs, fmt.Sprintf("%s --repo %s --archive text --prefetch 0 %%f %%p", bins.WalFetch, ws.URL))
		})
	}
	before := dirSize(filepath.Join(repoDir, "text"))
	fBefore := fetch()
	rec, recCPU := recompressArchive(b, repoDir, "text")
	after := dirSize(filepath.Join(repoDir, "text"))
	fAfter := fetch()
	z1, z3 := zstdSizes(b, w, 1), zstdSizes(b, w, 3)
	raw := float64(w.raw)
	fmt.Printf("\nwalstore at rest: %d real segments of text-heavy WAL (pgbench, hex text), %d cores\n\n", n, numCPU())
	fmt.Printf("| %-44s | %8s | %9s |\n|%s|%s|%s|\n", "encoding", "size/raw", "MiB", strings.Repeat("-", 46), strings.Repeat("-", 10), strings.Repeat("-", 11))
	for _, r := range []struct {
		name string
		n    int64
	}{{"as pushed (zstd fastest, no entropy stage)", before}, {"after walstored recompress", after}, {"zstd -1 of each segment (command)", z1}, {"zstd -3 of each segment (command)", z3}} {
		fmt.Printf("| %-44s | %8.3f | %9.1f |\n", r.name, float64(r.n)/raw, float64(r.n)/(1<<20))
	}
	if rec.RawBytes > 0 {
		gib := float64(rec.RawBytes) / (1 << 30)
		fmt.Printf("\nrecompression: %d of %d segments (the newest is left), %.1f s, %.1f s and %.1f s of CPU per GiB of WAL\n", rec.Recompressed, n, rec.Seconds, rec.Seconds/gib, recCPU.Seconds()/gib)
	}
	perSeg := func(r row) float64 { return float64((r.clientCPU + r.serverCPU).Milliseconds()) / float64(n) }
	fmt.Printf("fetch (--prefetch 0): %.1f segments/s and %.0f ms of CPU per segment before, %.1f and %.0f ms after\n",
		float64(n)/fBefore.elapsed.Seconds(), perSeg(fBefore), float64(n)/fAfter.elapsed.Seconds(), perSeg(fAfter))
}
