package tests

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/tests/testenv"
)

// mintToken runs walstored token and returns the token and its line.
func mintToken(t *testing.T, name, scope, archives string) (token, line string) {
	t.Helper()
	res := testenv.Run(t, testenv.Dir(t), nil, testenv.Binaries(t).WalStored, "token", "--name", name, "--scope", scope, "--archives", archives)
	if res.Code != 0 {
		t.Fatalf("walstored token: %s", res.Stderr)
	}
	var lines []string
	for _, l := range strings.Split(res.Stdout, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "wst_") || strings.Contains(lines[1], lines[0]) {
		t.Fatalf("walstored token printed %q", res.Stdout)
	}
	return lines[0], lines[1]
}

// tokenFile writes a client's token where postgres can read it.
func tokenFile(t *testing.T, dir, name, token string) string {
	p := filepath.Join(dir, name+".token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.Chown(t, p)
	return p
}

// Tokens with scopes and archives, enforced on real clients.
func TestTokensAndScopes(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	pushTok, pushLine := mintToken(t, "db1", "push", "main")
	fetchTok, fetchLine := mintToken(t, "standby", "fetch", "main")
	otherTok, otherLine := mintToken(t, "crm-db", "push", "crm")
	adminTok, adminLine := mintToken(t, "ops", "admin", "*")
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte(strings.Join([]string{"# clients", pushLine, fetchLine, otherLine}, "\n")+"\n"), 0o600)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"), "--tokens", tokens)

	r := repo{url: ws.URL, extra: []string{"--token-file", tokenFile(t, dir, "push", pushTok), "--timeout", "5s"}}
	c := archivingCluster(t, dir, "primary", r, 1)
	c.Start()
	c.Exec(ledgerDDL)
	insertBatch(c, 0, 1000)
	seg := c.SwitchWAL()
	c.WaitArchived(seg, time.Minute)

	work := testenv.Dir(t)
	run := func(bin string, env []string, args ...string) testenv.Result {
		return testenv.Run(t, work, env, bin, args...)
	}
	// A push token can fetch what it pushed (walpush's own checks need it).
	dest := filepath.Join(work, seg)
	if res := run(bins.WalFetch, []string{"WALSTORE_TOKEN=" + pushTok}, "--repo", ws.URL, seg, dest); res.Code != 0 {
		t.Fatalf("push token fetching its own archive: exit %d %s", res.Code, res.Stderr)
	}
	for _, tc := range []struct {
		name string
		res  testenv.Result
		code int
		want string
	}{
		{"no token", run(bins.WalPush, nil, "--repo", ws.URL, "--jobs", "1", dest), 2, "no token was given"},
		{"wrong token", run(bins.WalPush, []string{"WALSTORE_TOKEN=wst_forged"}, "--repo", ws.URL, "--jobs", "1", dest), 2, "the token given is not one of this walstored's"},
		{"fetch token cannot push", run(bins.WalPush, []string{"WALSTORE_TOKEN=" + fetchTok}, "--repo", ws.URL, "--jobs", "1", dest), 2, "may not put"},
		{"token for archive crm cannot read main", run(bins.WalFetch, []string{"WALSTORE_TOKEN=" + otherTok}, "--repo", ws.URL, seg, filepath.Join(work, "x")), 2, "may not get in archive main"},
		{"wrong token fetching", run(bins.WalFetch, []string{"WALSTORE_TOKEN=wst_forged"}, "--repo", ws.URL, seg, filepath.Join(work, "x")), 2, "the token given is not one of this walstored's"},
		{"admin token not in the file yet", run(bins.WalStored, []string{"WALSTORE_TOKEN=" + adminTok}, "verify", "--repo", ws.URL), 2, "the token given is not one of this walstored's"},
	} {
		if tc.res.Code != tc.code || !strings.Contains(tc.res.Stderr, tc.want) || strings.Count(strings.TrimSpace(tc.res.Stderr), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and one line with %q", tc.name, tc.res.Code, tc.res.Stderr, tc.code, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(work, "x")); !os.IsNotExist(err) {
		t.Error("a refused fetch wrote its destination")
	}
	// A fetch token may list, never delete.
	fetchStore, _ := httpstore.New(ws.URL, httpstore.Options{Token: fetchTok})
	if err := fetchStore.List(context.Background(), "main/", func(store.Info) error { return nil }); err != nil {
		t.Errorf("fetch token listing: %v", err)
	}
	if err := fetchStore.Delete(context.Background(), "main/wal/"+seg); !errors.Is(err, errkind.ErrForbidden) {
		t.Errorf("fetch token deleting: %v, want ErrForbidden", err)
	}
	if !strings.Contains(ws.Log(), "status=403") || !strings.Contains(ws.Log(), "status=401") {
		t.Error("refusals are not in the server log")
	}

	// SIGHUP reloads the token file: the admin token works afterwards.
	os.WriteFile(tokens, []byte(strings.Join([]string{pushLine, fetchLine, otherLine, adminLine}, "\n")+"\n"), 0o600)
	syscall.Kill(ws.PID(), syscall.SIGHUP)
	testenv.WaitFor(t, 10*time.Second, "the token file to be reloaded", func() bool { return strings.Contains(ws.Log(), "token file reloaded") })
	if res := run(bins.WalStored, []string{"WALSTORE_TOKEN=" + adminTok}, "verify", "--repo", ws.URL); res.Code != 0 {
		t.Fatalf("admin verify after reload: exit %d %s", res.Code, res.Stderr)
	}
	// Tokens never appear in argv or in the server's log.
	if strings.Contains(ws.Log(), pushTok) || strings.Contains(ws.Log(), adminTok) {
		t.Error("a token was logged")
	}
}

// TLS: a client trusting the right CA works, the wrong CA is refused at
// once with a clear message, client certificates are enforced.
func TestTLS(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	ca := testenv.NewCA(t, "walstore-test")
	other := testenv.NewCA(t, "someone-else")
	cert, key := ca.Issue(t, "walstored", true)
	clientCert, clientKey := ca.Issue(t, "db1", false)
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"),
		"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca.CertFile)
	segs := testenv.RealSegments(t, 1, 1)
	work := testenv.Dir(t)
	base := []string{"--repo", ws.URL, "--jobs", "1", "--timeout", "20s"}

	ok := testenv.Run(t, work, nil, bins.WalPush, append(base, "--cacert", ca.CertFile, "--client-cert", clientCert, "--client-key", clientKey, segs[0])...)
	if ok.Code != 0 {
		t.Fatalf("push over TLS with a client certificate: exit %d %s", ok.Code, ok.Stderr)
	}
	wrong := testenv.Run(t, work, nil, bins.WalPush, append(base, "--cacert", other.CertFile, "--client-cert", clientCert, "--client-key", clientKey, segs[0])...)
	if wrong.Code == 0 || !strings.Contains(wrong.Stderr, "does not trust") || wrong.Took > 5*time.Second {
		t.Fatalf("wrong CA: exit %d after %v: %q; want a quick, clear refusal", wrong.Code, wrong.Took, wrong.Stderr)
	}
	nocert := testenv.Run(t, work, nil, bins.WalPush, append(base, "--cacert", ca.CertFile, segs[0])...)
	if nocert.Code == 0 || !strings.Contains(nocert.Stderr, "client certificate") || nocert.Took > 5*time.Second {
		t.Fatalf("no client certificate: exit %d after %v: %q; want a quick, clear refusal", nocert.Code, nocert.Took, nocert.Stderr)
	}
	t.Logf("wrong CA: %s", strings.TrimSpace(wrong.Stderr))
	t.Logf("no client certificate: %s", strings.TrimSpace(nocert.Stderr))
}

// Without a token file, walstored only listens on loopback unless told
// --insecure.
func TestNonLoopbackListenNeedsTokens(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	res := testenv.Run(t, testenv.Dir(t), nil, bins.WalStored, "serve", "--listen", "0.0.0.0:0", "--store", "file://"+testenv.Dir(t))
	if res.Code != 2 || !strings.Contains(res.Stderr, "without --tokens") {
		t.Fatalf("exit %d: %s", res.Code, res.Stderr)
	}
}

// walstored tls makes what the README's TLS setup needs: a CA once,
// walstored's certificate for the names clients use, client
// certificates; a client pushes over mutual TLS with them. A second run
// reuses the CA and never replaces a certificate.
func TestWalstoredTLS(t *testing.T) {
	t.Parallel()
	bins := testenv.Binaries(t)
	dir := testenv.Dir(t)
	tlsDir := filepath.Join(dir, "tls")
	res := testenv.Run(t, dir, nil, bins.WalStored, "tls", "--dir", tlsDir, "--host", "127.0.0.1", "--host", "localhost", "--client", "db1")
	if res.Code != 0 || !strings.Contains(res.Stdout, "made a CA") {
		t.Fatalf("walstored tls: exit %d %s%s", res.Code, res.Stdout, res.Stderr)
	}
	if fi, err := os.Stat(filepath.Join(tlsDir, "ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the CA's key: %v %v", fi, err)
	}
	f := func(n string) string { return filepath.Join(tlsDir, n) }
	ws := testenv.StartWalstored(t, nil, "--store", "file://"+filepath.Join(dir, "repo"),
		"--tls-cert", f("server.pem"), "--tls-key", f("server-key.pem"), "--tls-client-ca", f("ca.pem"))
	for _, n := range []string{"db1.pem", "db1-key.pem", "ca.pem"} {
		testenv.Chown(t, f(n))
	}
	seg := segmentFiles(t, 1)[0]
	push := testenv.Run(t, dir, nil, bins.WalPush, "--repo", ws.URL, "--cacert", f("ca.pem"), "--client-cert", f("db1.pem"), "--client-key", f("db1-key.pem"), "--jobs", "1", seg)
	if push.Code != 0 {
		t.Fatalf("push over mutual TLS with walstored tls's certificates: exit %d %s", push.Code, push.Stderr)
	}
	if noCert := testenv.Run(t, dir, nil, bins.WalPush, "--repo", ws.URL, "--cacert", f("ca.pem"), "--jobs", "1", seg); noCert.Code == 0 {
		t.Fatal("a client without a certificate pushed")
	}
	again := testenv.Run(t, dir, nil, bins.WalStored, "tls", "--dir", tlsDir, "--client", "db2")
	if again.Code != 0 || strings.Contains(again.Stdout, "made a CA") {
		t.Fatalf("a second run: exit %d %s%s", again.Code, again.Stdout, again.Stderr)
	}
	if over := testenv.Run(t, dir, nil, bins.WalStored, "tls", "--dir", tlsDir, "--host", "localhost"); over.Code == 0 {
		t.Fatal("walstored tls replaced walstored's certificate")
	}
}
