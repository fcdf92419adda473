package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
)

// deepCheck is verify --deep: every block every completed backup lists
// is in its pack, at the place listed, and hashes to its address. A pack
// is read once for all the backups that use it; one that failed is named
// once, with the first backup and file that need it. What passed is
// recorded (checked: pack key → blocks proven), so that a nightly run
// reads only packs a new backup lists blocks of anew.
func deepCheck(ctx context.Context, a *archive.Archive, inv *Inventory, proven map[string]map[string]bool, add func(string, error)) (packsRead int, err error) {
	type need struct {
		backup, path string
		b            archive.Block
	}
	byPack := map[string][]need{}
	for _, r := range inv.Backups.Complete {
		if r.Format != archive.FormatBlocks {
			continue
		}
		c, err := a.ReadContents(ctx, r.ID)
		if err != nil {
			add(a.Layout.Backup(r.ID, archive.ContentsFile), err)
			continue
		}
		for _, e := range c.Entries {
			for _, b := range e.Blocks {
				if b.Pack < 0 || b.Pack >= len(c.Packs) {
					add(a.Layout.Backup(r.ID, archive.ContentsFile), fmt.Errorf("%w: %s lists pack %d of %d", errkind.ErrCorrupt, e.Path, b.Pack, len(c.Packs)))
					continue
				}
				p := c.Packs[b.Pack]
				if proven[p][blockKey(b)] {
					continue
				}
				byPack[p] = append(byPack[p], need{r.ID, e.Path, b})
			}
		}
	}
	packs := make([]string, 0, len(byPack))
	for p := range byPack {
		packs = append(packs, p)
	}
	sort.Strings(packs)
	for _, p := range packs {
		data, err := readPack(ctx, a, p)
		packsRead++
		for _, n := range byPack[p] {
			if err == nil {
				b := n.b
				if b.Off < 0 || b.Off+int64(b.Len) > int64(len(data)) {
					err = fmt.Errorf("%w: backup %s, %s: a block at %d+%d lies past the pack's end (%d bytes)", errkind.ErrCorrupt, n.backup, n.path, b.Off, b.Len, len(data))
				} else if sum := sha256.Sum256(data[b.Off : b.Off+int64(b.Len)]); hex.EncodeToString(sum[:]) != b.SHA256 {
					err = fmt.Errorf("%w: backup %s, %s: the block at %d+%d is %s, the backup lists %s", errkind.ErrCorrupt, n.backup, n.path, b.Off, b.Len, hex.EncodeToString(sum[:6]), b.SHA256[:min(12, len(b.SHA256))])
				}
			}
			if err != nil {
				add(a.Layout.Pack(p), err)
				break
			}
			if proven[p] == nil {
				proven[p] = map[string]bool{}
			}
			proven[p][blockKey(n.b)] = true
		}
	}
	return packsRead, nil
}

func blockKey(b archive.Block) string { return fmt.Sprintf("%s@%d+%d", b.SHA256, b.Off, b.Len) }

// readPack reads a pack's raw content, checked against its name.
func readPack(ctx context.Context, a *archive.Archive, id string) ([]byte, error) {
	var b []byte
	err := a.Load(ctx, a.Layout.Pack(id), func(hdr envelope.Header, rc io.Reader) error {
		if hdr.Digest.String() != id {
			return fmt.Errorf("%w: pack %s holds content %s", errkind.ErrCorrupt, id[:12], hdr.Digest.Short())
		}
		var err error
		b, err = io.ReadAll(io.LimitReader(rc, 1<<30))
		return err
	})
	return b, err
}
