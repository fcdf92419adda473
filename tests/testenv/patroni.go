package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Etcd is a one-member etcd (Debian's etcd-server) on loopback, for
// Patroni's DCS.
type Etcd struct {
	ClientURL string
	cmd       *exec.Cmd
}

// StartEtcd starts etcd on free loopback ports and stops it at the end.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd not found (make test installs Debian's etcd-server): %v", err)
	}
	dir := Dir(t)
	client, peer := FreePort(t), FreePort(t)
	e := &Etcd{ClientURL: fmt.Sprintf("http://127.0.0.1:%d", client)}
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	e.cmd = exec.Command(bin, "--name", "walstore-test", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", e.ClientURL, "--advertise-client-urls", e.ClientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "walstore-test="+peerURL, "--enable-v2=true")
	logf, _ := os.Create(filepath.Join(dir, "etcd.log"))
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() {
		e.cmd.Process.Signal(syscall.SIGTERM)
		e.cmd.Wait()
		logf.Close()
	})
	WaitFor(t, 30*time.Second, "etcd to answer", func() bool {
		resp, err := http.Get(e.ClientURL + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return e
}

// PatroniOptions configure one Patroni node.
type PatroniOptions struct {
	Scope string
	// ArchiveCommand and RestoreCommand are PostgreSQL's; ReplicaMethod
	// is the command of a create_replica_methods entry named walstore
	// (Patroni appends its own arguments).
	ArchiveCommand, RestoreCommand, ReplicaMethod string
}

// PatroniNode is a Patroni (Debian's patroni) managing one PostgreSQL 15
// data directory, run as postgres.
type PatroniNode struct {
	Name, Dir, DataDir string
	PGPort, APIPort    int
	config             string
	cmd                *exec.Cmd
	log                *os.File
	t                  testing.TB
}

// StartPatroni starts a Patroni node of opt.Scope on etcd e. The first
// node bootstraps the cluster; a later one builds its replica with the
// walstore replica method.
func StartPatroni(t testing.TB, e *Etcd, parent, name string, opt PatroniOptions) *PatroniNode {
	t.Helper()
	if _, err := exec.LookPath("patroni"); err != nil {
		t.Fatalf("patroni not found (make test installs Debian's patroni): %v", err)
	}
	dir := PostgresDir(t, parent, name)
	n := &PatroniNode{Name: name, Dir: dir, DataDir: filepath.Join(dir, "data"), PGPort: FreePort(t), APIPort: FreePort(t), t: t}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	yaml := fmt.Sprintf(`scope: %s
name: %s
restapi:
  listen: 127.0.0.1:%d
  connect_address: 127.0.0.1:%d
etcd3:
  hosts: %s
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 5
    maximum_lag_on_failover: 104857600
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        wal_log_hints: "on"
        archive_mode: "on"
        archive_command: %s
        archive_timeout: 0
        max_wal_senders: 5
        max_replication_slots: 5
        checkpoint_timeout: 30min
        max_wal_size: 1GB
  initdb:
    - encoding: UTF8
    - data-checksums
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:%d
  connect_address: 127.0.0.1:%d
  data_dir: %s
  bin_dir: /usr/lib/postgresql/15/bin
  pgpass: %s
  authentication:
    superuser: {username: postgres, password: postgres}
    replication: {username: replicator, password: replicator}
    rewind: {username: postgres, password: postgres}
  parameters:
    unix_socket_directories: %s
  create_replica_methods: [walstore, basebackup]
  walstore:
    command: %s
  recovery_conf:
    restore_command: %s
`, opt.Scope, name, n.APIPort, n.APIPort, strings.TrimPrefix(e.ClientURL, "http://"), q(opt.ArchiveCommand),
		n.PGPort, n.PGPort, n.DataDir, filepath.Join(dir, "pgpass"), dir, q(opt.ReplicaMethod), q(opt.RestoreCommand))
	n.config = filepath.Join(dir, "patroni.yml")
	if err := os.WriteFile(n.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	Chown(t, dir)
	n.Start()
	t.Cleanup(n.stop)
	return n
}

// Start starts (or restarts) the node's Patroni.
func (n *PatroniNode) Start() {
	n.t.Helper()
	logf, err := os.OpenFile(filepath.Join(n.Dir, "patroni.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	n.log = logf
	n.cmd = exec.Command("runuser", "-u", "postgres", "--", "patroni", n.config)
	n.cmd.Dir = n.Dir
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatalf("start patroni %s: %v", n.Name, err)
	}
	go n.cmd.Wait()
}

// Kill9 kills the node's Patroni and its postmaster with SIGKILL, as a
// crashed host would lose them.
func (n *PatroniNode) Kill9() {
	if n.cmd != nil && n.cmd.Process != nil {
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	}
	if pid := n.postmasterPID(); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
		for _, c := range childrenOf(pid) {
			syscall.Kill(c, syscall.SIGKILL)
		}
	}
	time.Sleep(500 * time.Millisecond)
}

func (n *PatroniNode) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(n.DataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

func (n *PatroniNode) stop() {
	if n.cmd != nil && n.cmd.Process != nil {
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGTERM)
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && n.postmasterPID() > 0 && syscall.Kill(n.postmasterPID(), 0) == nil {
			time.Sleep(200 * time.Millisecond)
		}
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	}
	if pid := n.postmasterPID(); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if n.log != nil {
		n.log.Close()
	}
}

// State is what the node's REST API says of it: role (primary, replica)
// and state (running, ...); "" when it does not answer.
func (n *PatroniNode) State() (role, state string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/patroni", n.APIPort))
	if err != nil {
		return "", ""
	}
	defer resp.Body.Close()
	var v struct {
		Role  string `json:"role"`
		State string `json:"state"`
	}
	json.NewDecoder(resp.Body).Decode(&v)
	if v.Role == "master" {
		v.Role = "primary"
	}
	return v.Role, v.State
}

// WaitRole waits until the node runs with role.
func (n *PatroniNode) WaitRole(role string, d time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(d)
	for {
		r, s := n.State()
		if r == role && s == "running" {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("patroni %s: role %q state %q after %v, want %s running; log tail:\n%s", n.Name, r, s, d, role, n.LogTail(40))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// Switchover asks the node's REST API to hand leadership to candidate.
func (n *PatroniNode) Switchover(leader, candidate string) {
	n.t.Helper()
	body, _ := json.Marshal(map[string]string{"leader": leader, "candidate": candidate})
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/switchover", n.APIPort), "application/json", bytes.NewReader(body))
	if err != nil {
		n.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		n.t.Fatalf("switchover: %d %s", resp.StatusCode, b)
	}
}

// LogTail is the end of the node's Patroni log.
func (n *PatroniNode) LogTail(lines int) string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "patroni.log"))
	return tail(string(b), lines)
}

// Cluster is the node's PostgreSQL, for queries (Patroni starts and
// stops it; its log is in Patroni's).
func (n *PatroniNode) Cluster() *Cluster {
	return &Cluster{t: n.t, Dir: n.DataDir, Port: n.PGPort, LogFile: filepath.Join(n.Dir, "patroni.log")}
}
