// Package auth is walstored's access control: a token file that names
// each client, the SHA-256 of its token (never the token itself), its
// scope and the archives it may touch.
//
//	# name      scope    archives      sha256 of the token
//	db1         push     billing       3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b
//	standby-a   fetch    billing,crm   9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	prometheus  metrics  *             ...
//	ops         admin    *             ...
//
// Scopes, least first:
//
//   - push: put WAL files (segments, .partial, .history, .backup) and
//     nothing else; get, stat and list (what archive_command needs, and
//     restore_command and walfetch restore on the same database server:
//     one config file serves all of them). A push client can add WAL but
//     never delete, replace, or write what retention and restore trust
//     (backup records, bindings, retired timelines): those are
//     admin-only.
//   - backup: put a backup's packs, progress records, contents, manifest
//     and completion record (keys under backups/ and packs/), and get,
//     stat, list what a backup and its resume read. Every store is
//     write-once, so it can add a backup but never delete or replace
//     anything; a completion record it writes is checked against the
//     backup's own label and manifest, and every block it lists is
//     hashed on restore. With push, what a database host needs for
//     walstored backup --pgdata.
//   - fetch: get, stat, list (what a standby or a restore needs).
//   - metrics: /metrics and /v1/stores only, no object at all.
//   - peer: tell this instance of a WAL file another instance in front
//     of the same store stored (/v1/notify), nothing else.
//   - admin: everything, including delete, backups, retention and retire.
package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/walstore/walstore/archive"
)

// Scope is what a client may do.
type Scope int

const (
	Push Scope = iota + 1
	Fetch
	Admin
	Metrics
	Backup
	Peer
)

func (s Scope) String() string {
	switch s {
	case Push:
		return "push"
	case Fetch:
		return "fetch"
	case Admin:
		return "admin"
	case Metrics:
		return "metrics"
	case Backup:
		return "backup"
	case Peer:
		return "peer"
	}
	return "none"
}

// ParseScope parses push, fetch, backup, metrics or admin.
func ParseScope(s string) (Scope, error) {
	switch s {
	case "backup":
		return Backup, nil
	case "peer":
		return Peer, nil
	case "push":
		return Push, nil
	case "fetch":
		return Fetch, nil
	case "admin":
		return Admin, nil
	case "metrics":
		return Metrics, nil
	}
	return 0, fmt.Errorf("scope %q: want push, fetch, backup, metrics, peer or admin", s)
}

// Op is an operation on the store.
type Op string

const (
	OpPut       Op = "put"
	OpPutWAL    Op = "put WAL"    // a put of a WAL file: the only put a push client may make
	OpPutBackup Op = "put backup" // a put of a backup's object or a pack: what a backup client may make
	OpGet       Op = "get"
	OpStat      Op = "stat"
	OpList      Op = "list"
	OpDelete    Op = "delete"
	OpMetrics   Op = "read metrics"
	OpNotify    Op = "notify of a stored WAL file" // a peer walstored
)

var allowed = map[Scope]map[Op]bool{
	Push:    {OpPutWAL: true, OpGet: true, OpStat: true, OpList: true},
	Fetch:   {OpGet: true, OpStat: true, OpList: true},
	Backup:  {OpPutBackup: true, OpGet: true, OpStat: true, OpList: true},
	Peer:    {OpNotify: true},
	Metrics: {OpMetrics: true},
	Admin:   {OpPut: true, OpPutWAL: true, OpPutBackup: true, OpGet: true, OpStat: true, OpList: true, OpDelete: true, OpMetrics: true, OpNotify: true},
}

// Client is one line of the token file.
type Client struct {
	Name     string
	Scope    Scope
	Archives []string // nil: every archive ("*")
	hash     [sha256.Size]byte
}

// Allows reports whether the client may do op on archive ("" for an
// operation that spans archives, which only "*" clients may do).
func (c *Client) Allows(op Op, archiveName string) bool {
	if !allowed[c.Scope][op] {
		return false
	}
	if c.Archives == nil {
		return true
	}
	for _, a := range c.Archives {
		if a == archiveName {
			return true
		}
	}
	return false
}

// Set is a parsed token file.
type Set struct {
	clients []Client
}

// Len is the number of clients.
func (s *Set) Len() int { return len(s.clients) }

// Authenticate returns the client a bearer token belongs to. Every entry
// is compared in constant time, so the time taken says nothing about
// which entry (or how much of a hash) matched.
func (s *Set) Authenticate(token string) (*Client, bool) {
	if token == "" {
		return nil, false
	}
	h := sha256.Sum256([]byte(token))
	var found *Client
	for i := range s.clients {
		if subtle.ConstantTimeCompare(h[:], s.clients[i].hash[:]) == 1 {
			found = &s.clients[i]
		}
	}
	return found, found != nil
}

// MaxFileSize bounds a token file.
const MaxFileSize = 1 << 20

// Parse reads a token file; errors name the line.
func Parse(r io.Reader) (*Set, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("token file larger than %d bytes", MaxFileSize)
	}
	s := &Set{}
	names, hashes := map[string]bool{}, map[[sha256.Size]byte]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), MaxFileSize)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		c, err := parseLine(text)
		if err != nil {
			return nil, fmt.Errorf("token file line %d: %w", line, err)
		}
		if names[c.Name] {
			return nil, fmt.Errorf("token file line %d: client %q appears twice", line, c.Name)
		}
		if hashes[c.hash] {
			return nil, fmt.Errorf("token file line %d: client %q has the same token as another client", line, c.Name)
		}
		names[c.Name], hashes[c.hash] = true, true
		s.clients = append(s.clients, c)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func parseLine(text string) (Client, error) {
	f := strings.Fields(text)
	if len(f) != 4 {
		return Client{}, fmt.Errorf("want \"NAME SCOPE ARCHIVES SHA256\", got %d fields", len(f))
	}
	c := Client{Name: f[0]}
	if !validName(c.Name) {
		return c, fmt.Errorf("client name %q: want letters, digits, '.', '_' or '-'", strconv.QuoteToASCII(c.Name))
	}
	var err error
	if c.Scope, err = ParseScope(f[1]); err != nil {
		return c, err
	}
	if f[2] != "*" {
		for _, a := range strings.Split(f[2], ",") {
			if err := archive.ValidArchiveName(a); err != nil {
				return c, err
			}
			c.Archives = append(c.Archives, a)
		}
	}
	h, err := hex.DecodeString(f[3])
	if err != nil || len(h) != sha256.Size {
		return c, fmt.Errorf("the last field must be the token's SHA-256 as 64 hex digits (walstored token prints it), not the token")
	}
	copy(c.hash[:], h)
	return c, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// Load reads and parses a token file.
func Load(path string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// NewToken mints a token: "wst_" and 32 random bytes, base64url.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "wst_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Hash is the token's SHA-256 as it goes into the token file.
func Hash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// Line is the token-file line for a client.
func Line(name string, scope Scope, archives []string, token string) (string, error) {
	if !validName(name) {
		return "", errors.New("client name: want letters, digits, '.', '_' or '-'")
	}
	a := "*"
	if len(archives) > 0 {
		for _, n := range archives {
			if err := archive.ValidArchiveName(n); err != nil {
				return "", err
			}
		}
		a = strings.Join(archives, ",")
	}
	return fmt.Sprintf("%s %s %s %s", name, scope, a, Hash(token)), nil
}
