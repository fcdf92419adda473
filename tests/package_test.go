package tests

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walstore/walstore/tests/testenv"
)

// TestDebianPackage: make deb builds walstore_<version>_amd64.deb with
// nfpm; dpkg -i installs the binaries, the units and /etc/walstore, makes
// the walstore user and its default store; walstored --version, init and
// serve work as that user; PostgreSQL archives through the packaged
// archive module and walpush agent into that walstored; dpkg --purge
// removes it all but the archive.
func TestDebianPackage(t *testing.T) {
	root := testenv.Root()
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	exec.Command("dpkg", "--purge", "walstore").Run() // a leftover of an earlier run
	os.RemoveAll("/var/lib/walstore")
	t.Cleanup(func() {
		exec.Command("dpkg", "--purge", "walstore").Run()
		os.RemoveAll("/var/lib/walstore")
	})
	args := []string{"--no-print-directory", "deb"}
	if v := os.Getenv("WALSTORE_NFPM"); v != "" {
		args = append(args, "NFPM="+v) // as make test built it
	}
	out := run("make", args...)
	debs, _ := filepath.Glob(filepath.Join(root, "build", "walstore_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v\n%s", debs, out)
	}
	info := run("dpkg-deb", "--info", debs[0])
	for _, want := range []string{"Package: walstore", "Architecture: amd64", "Version: "} {
		if !strings.Contains(info, want) {
			t.Fatalf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	contents := run("dpkg-deb", "--contents", debs[0])
	for _, want := range []string{"./usr/bin/walpush", "./usr/bin/walfetch", "./usr/bin/walstored", "./lib/systemd/system/walstored.service", "./etc/walstore/walstored.env",
		"./usr/lib/postgresql/15/lib/walstore.so", "./lib/systemd/system/walpush-agent@.service"} {
		if !strings.Contains(contents, want) {
			t.Fatalf("the package lacks %s:\n%s", want, contents)
		}
	}
	run("dpkg", "-i", debs[0])
	if v := run("/usr/bin/walstored", "--version"); !strings.HasPrefix(v, "walstored (walstore) ") {
		t.Fatalf("walstored --version: %q", v)
	}
	unit, _ := os.ReadFile("/lib/systemd/system/walstored.service")
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/walstored serve") {
		t.Fatalf("the installed unit does not run /usr/bin/walstored:\n%s", unit)
	}
	run("id", "walstore")
	fi, err := os.Stat("/var/lib/walstore/repo")
	if err != nil {
		t.Fatalf("no default store: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); run("id", "-u", "walstore") != fmt.Sprintf("%d\n", st.Uid) {
		t.Fatalf("the default store is not the walstore user's")
	}
	// init, as walstore, finds the store the package made; serve runs
	// as walstore on it.
	if out, err := exec.Command("runuser", "-u", "walstore", "--", "/usr/bin/walstored", "init", "--store", "file:///var/lib/walstore/repo").CombinedOutput(); err != nil || !strings.Contains(string(out), "already is a walstore repository") {
		t.Fatalf("init as walstore: %v %s", err, out)
	}
	port := testenv.FreePort(t)
	serve := exec.Command("runuser", "-u", "walstore", "--", "/usr/bin/walstored", "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--store", "file:///var/lib/walstore/repo")
	serve.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { syscall.Kill(-serve.Process.Pid, syscall.SIGTERM); serve.Wait() }()
	testenv.WaitFor(t, 20*time.Second, "walstored from the package to answer", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	// PostgreSQL loads the packaged module by name from $libdir, and the
	// packaged agent archives through the packaged walstored.
	dir := testenv.Dir(t)
	c := testenv.NewCluster(t, dir, "pkg", testenv.ClusterOptions{})
	sock := filepath.Join(testenv.PostgresDir(t, dir, "run"), "agent.sock")
	agent := exec.Command("runuser", "-u", "postgres", "--", "/usr/bin/walpush", "agent", "--pgdata", c.Dir, "--agent-socket", sock, "--repo", fmt.Sprintf("http://127.0.0.1:%d", port))
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { syscall.Kill(-agent.Process.Pid, syscall.SIGTERM); agent.Wait() }()
	c.WriteConf("archive_mode = on", "archive_library = 'walstore'", "walstore.agent_socket = '"+sock+"'")
	c.Start()
	c.Exec("CREATE TABLE t AS SELECT generate_series(1, 1000) AS x")
	c.WaitArchived(c.SwitchWAL(), time.Minute)
	c.Stop()
	syscall.Kill(-agent.Process.Pid, syscall.SIGTERM)
	agent.Wait()
	syscall.Kill(-serve.Process.Pid, syscall.SIGTERM)
	serve.Wait()
	run("dpkg", "--purge", "walstore")
	for _, p := range []string{"/usr/bin/walstored", "/usr/bin/walpush", "/lib/systemd/system/walstored.service", "/etc/walstore/walstored.env", "/usr/lib/postgresql/15/lib/walstore.so"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there after dpkg --purge", p)
		}
	}
	if exec.Command("id", "walstore").Run() == nil {
		t.Error("the walstore user is still there after dpkg --purge")
	}
	if _, err := os.Stat("/var/lib/walstore/repo"); err != nil {
		t.Errorf("dpkg --purge removed the archive: %v", err)
	}
}
