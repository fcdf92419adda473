package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// RepoCache remembers, in a small file, what a repository proved once:
// that it carries the walstore marker, that its S3 endpoint honours
// conditional writes, archives' system bindings, and which walstored of
// a list answered last. walpush and walfetch keep it in the cluster's
// state directory (worker.StateDir), so that a direct push to S3 costs
// one request instead of four, and a dead walstored of a list is not
// tried first on every call. Entries expire after a day, so that a
// repository that was replaced is noticed. A cache that cannot be read or
// written is no cache; nothing fails because of it.
type RepoCache struct {
	path string
	mu   sync.Mutex
	data cacheData
}

type cacheData struct {
	Proofs    map[string]time.Time `json:"proofs"`
	Bindings  map[string]uint64    `json:"bindings"`
	Preferred map[string]int       `json:"preferred"` // repository list → index that answered last
}

// cacheTTL is how long a proof holds.
const cacheTTL = 24 * time.Hour

// OpenCache returns the cache in dir (created on first write).
func OpenCache(dir string) *RepoCache {
	c := &RepoCache{path: filepath.Join(dir, "repository-cache.json")}
	if b, err := os.ReadFile(c.path); err == nil {
		json.Unmarshal(b, &c.data)
	}
	return c
}

// Proven reports whether what was proven for the repository at url holds.
func (c *RepoCache) Proven(url, what string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.data.Proofs[url+" "+what]
	return ok && time.Since(t) < cacheTTL
}

// Prove records that what holds for the repository at url.
func (c *RepoCache) Prove(url, what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.data.Proofs == nil {
		c.data.Proofs = map[string]time.Time{}
	}
	if t, ok := c.data.Proofs[url+" "+what]; ok && time.Since(t) < cacheTTL/2 {
		return
	}
	c.data.Proofs[url+" "+what] = time.Now()
	c.saveLocked()
}

func (c *RepoCache) saveLocked() {
	b, _ := json.Marshal(c.data)
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return
	}
	tmp := c.path + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		os.Rename(tmp, c.path)
	}
}

// Preferred is the index of the walstored of list that answered last.
func (c *RepoCache) Preferred(list string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.data.Preferred[list]
}

// Prefer records that walstored i of list answered.
func (c *RepoCache) Prefer(list string, i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.data.Preferred == nil {
		c.data.Preferred = map[string]int{}
	}
	if c.data.Preferred[list] == i {
		return
	}
	c.data.Preferred[list] = i
	c.saveLocked()
}

// Bindings returns the archive binding cache of the repository at url.
func (c *RepoCache) Bindings(url string) *bindings { return &bindings{c: c, url: url} }

type bindings struct {
	c   *RepoCache
	url string
}

func (b *bindings) Load(archiveName string) (uint64, bool) {
	if !b.c.Proven(b.url, "binding "+archiveName) {
		return 0, false
	}
	b.c.mu.Lock()
	defer b.c.mu.Unlock()
	id, ok := b.c.data.Bindings[b.url+" "+archiveName]
	return id, ok && id != 0
}

func (b *bindings) Save(archiveName string, sysid uint64) {
	b.c.mu.Lock()
	defer b.c.mu.Unlock()
	if b.c.data.Bindings == nil {
		b.c.data.Bindings = map[string]uint64{}
	}
	if b.c.data.Proofs == nil {
		b.c.data.Proofs = map[string]time.Time{}
	}
	b.c.data.Bindings[b.url+" "+archiveName] = sysid
	b.c.data.Proofs[b.url+" binding "+archiveName] = time.Now()
	b.c.saveLocked()
}
