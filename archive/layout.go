package archive

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// The key layout of a repository. Nothing else builds or parses keys.
//
//	<archive>/wal/<WAL file name>              segments, .partial, .history, .backup files
//	<archive>/meta/system                      the system identifier the archive is bound to
//	<archive>/meta/drills/<id>                 restore drills and how they went (walstored drill)
//	<archive>/meta/leases/<job>                a job running on the archive (retention), until it expires
//	<archive>/meta/retention/<id>              a retention run: its policy and what it did (the newest few)
//	<archive>/meta/recompress/<id>             a recompression pass: what it saved (the newest few)
//	<archive>/meta/labels/<name>.<sha256>      a .backup file pushed under a name already taken by other content
//	<archive>/meta/verify/result               the last verify: when, and what did not verify (small: archives, the page)
//	<archive>/meta/verify/checked              what passed it, for the next verify to read only what is new
//	<archive>/backups/<id>/<file>              base backups: contents (or tar parts), manifest, progress, completion record
//	<archive>/packs/<sha256>                   blocks of backed-up files, shared by the archive's backups (see packs.go)
//	<archive>/retired/<tli>/retired.json       a timeline taken out of recovery's view
//	<archive>/retired/<tli>/wal/<WAL name>     its files, still bound to their live names
//	<archive>/retired/<tli>/restored.json      a retired timeline brought back (when, and how old its WAL was)
//	<archive>/quarantine/<name>.<sha256>       a WAL object set aside (walstored quarantine), still bound to its name
//	<archive>/quarantine/<name>.<sha256>.json  who set it aside, when and why
//	_repo/marker                               this is a walstore repository
//	_repo/leases/<job>                         a repository-wide job running (walstored sync)
//	_repo/probes/<random>                      a write probe (/healthz), deleted at once
//
// Archive names start with a letter or a digit, so "_repo" is never one.
const (
	walDir        = "wal"
	metaDir       = "meta"
	backupsDir    = "backups"
	packsDir      = "packs"
	retiredDir    = "retired"
	quarantineDir = "quarantine"
	repoDir       = "_repo"
)

// Repository-wide keys.
const (
	// MarkerKey says "this is a walstore repository": clients refuse a
	// file:// or s3:// location without it, so an unmounted share never
	// silently becomes a new repository.
	MarkerKey = repoDir + "/marker"
	// HealthKey is a key that never exists: a Stat of it proves a store
	// answers.
	HealthKey = repoDir + "/health-probe"
	// SyncLeaseKey is the lease of walstored sync.
	SyncLeaseKey = repoDir + "/leases/sync"
)

// StoreLocal reports the keys that belong to the one store they are in
// and are never copied between stores: repository-wide leases (taken in
// one store, see TakeLeaseInFirst) and write probes.
func StoreLocal(key string) bool {
	return strings.HasPrefix(key, repoDir+"/leases/") || strings.HasPrefix(key, repoDir+"/probes/")
}

// ProbeKey is a fresh key for a write probe (store.Probe): random, so
// that probes from several instances never meet.
func ProbeKey() string {
	return repoDir + "/probes/" + rand.Text()
}

// DefaultArchive is the archive name used when none is given.
const DefaultArchive = "main"

// ValidArchiveName checks an archive name: 1 to 64 ASCII letters, digits,
// '.', '_' or '-', starting with a letter or a digit.
func ValidArchiveName(name string) error {
	ok := name != "" && len(name) <= 64 && store.ValidComponent(name) == nil
	if ok {
		c := name[0]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	if !ok {
		return fmt.Errorf("%w: archive name %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", errkind.ErrInvalid, errkind.Quote(name))
	}
	return nil
}

// Layout is the key layout of one archive.
type Layout struct{ Archive string }

// Prefix is the prefix of every key of the archive.
func (l Layout) Prefix() string { return l.Archive + "/" }

// WALPrefix is the prefix of the archive's WAL files.
func (l Layout) WALPrefix() string { return l.Archive + "/" + walDir + "/" }

// WAL is the key of a WAL file.
func (l Layout) WAL(n wal.Name) string { return l.WALPrefix() + n.String() }

// LabelCopy is the key of a .backup file kept beside the one stored under
// its name (another content came first): bound to its SHA-256, so that
// nobody can take this key with other content.
func (l Layout) LabelCopy(n wal.Name, sha256 string) string {
	return l.LabelCopiesPrefix(n) + sha256
}

// LabelCopiesPrefix is the prefix of the copies kept beside .backup file n.
func (l Layout) LabelCopiesPrefix(n wal.Name) string {
	return l.Archive + "/" + metaDir + "/labels/" + n.String() + "."
}

// VerifyResult is the key of the last verify's result.
func (l Layout) VerifyResult() string { return l.Archive + "/" + metaDir + "/verify/result" }

// VerifyChecked is the key of what the last verify found intact.
func (l Layout) VerifyChecked() string { return l.Archive + "/" + metaDir + "/verify/checked" }

// QuarantinePrefix is the prefix of the archive's quarantined objects.
func (l Layout) QuarantinePrefix() string { return l.Archive + "/" + quarantineDir + "/" }

// Quarantined is the key of WAL object n with SHA-256 sum, set aside.
func (l Layout) Quarantined(n wal.Name, sum string) string {
	return l.QuarantinePrefix() + n.String() + "." + sum
}

// QuarantineRecord is the key of the record of a quarantined object.
func (l Layout) QuarantineRecord(n wal.Name, sum string) string {
	return l.Quarantined(n, sum) + ".json"
}

// System is the key of the archive's system binding.
func (l Layout) System() string { return l.Archive + "/" + metaDir + "/system" }

// DrillsPrefix is the prefix of the records of restore drills.
func (l Layout) DrillsPrefix() string { return l.Archive + "/" + metaDir + "/drills/" }

// Lease is the key of the lease of a job on the archive (retention).
func (l Layout) Lease(job string) string { return l.Archive + "/" + metaDir + "/leases/" + job }

// RetentionPrefix is the prefix of the records of retention runs.
func (l Layout) RetentionPrefix() string { return l.Archive + "/" + metaDir + "/retention/" }

// RetentionRun is the key of the record of retention run id.
func (l Layout) RetentionRun(id string) string { return l.RetentionPrefix() + id }

// MetaPrefix is the prefix of the archive's records (binding, drills,
// leases, retention runs, recompression passes).
func (l Layout) MetaPrefix() string { return l.Archive + "/" + metaDir + "/" }

// RecompressPrefix is the prefix of the records of recompression passes.
func (l Layout) RecompressPrefix() string { return l.MetaPrefix() + "recompress/" }

// RecompressRun is the key of the record of recompression pass id.
func (l Layout) RecompressRun(id string) string { return l.RecompressPrefix() + id }

// Drill is the key of the record of drill id.
func (l Layout) Drill(id string) string { return l.DrillsPrefix() + id }

// BackupsPrefix is the prefix of every backup of the archive.
func (l Layout) BackupsPrefix() string { return l.Archive + "/" + backupsDir + "/" }

// BackupPrefix is the prefix of backup id's objects.
func (l Layout) BackupPrefix(id string) string { return l.BackupsPrefix() + id + "/" }

// Backup is the key of a file of backup id.
func (l Layout) Backup(id, file string) string { return l.BackupPrefix(id) + file }

// PacksPrefix is the prefix of the archive's packs.
func (l Layout) PacksPrefix() string { return l.Archive + "/" + packsDir + "/" }

// Pack is the key of pack id (the SHA-256 of its raw content, in hex).
func (l Layout) Pack(id string) string { return l.PacksPrefix() + id }

// RetiredPrefix is the prefix of a retired timeline's objects.
func (l Layout) RetiredPrefix(tli uint32) string {
	return fmt.Sprintf("%s/%s/%08X/", l.Archive, retiredDir, tli)
}

// RetiredRecord is the key of a retired timeline's record.
func (l Layout) RetiredRecord(tli uint32) string { return l.RetiredPrefix(tli) + "retired.json" }

// RestoredRecord is the key of the record of a timeline brought back
// from retirement.
func (l Layout) RestoredRecord(tli uint32) string { return l.RetiredPrefix(tli) + "restored.json" }

// Retired is the key of a retired WAL file.
func (l Layout) Retired(tli uint32, n wal.Name) string {
	return l.RetiredPrefix(tli) + walDir + "/" + n.String()
}

// KeyKind is what a key holds.
type KeyKind int

const (
	KindWAL KeyKind = iota + 1
	KindSystem
	KindDrill
	KindBackup
	KindRetiredRecord
	KindRetiredWAL
	KindRestoredRecord
	KindRepo
	KindLease
	KindRetention
	KindPack
	KindRecompressRun
	KindLabelCopy
	KindQuarantined
	KindQuarantineRecord
	KindVerifyRecord
)

func (k KeyKind) String() string {
	switch k {
	case KindWAL:
		return "WAL file"
	case KindSystem:
		return "system binding"
	case KindDrill:
		return "drill record"
	case KindBackup:
		return "backup object"
	case KindRetiredRecord, KindRetiredWAL, KindRestoredRecord:
		return "retired timeline"
	case KindRepo:
		return "repository object"
	case KindLease:
		return "lease"
	case KindRetention:
		return "retention record"
	case KindPack:
		return "backup pack"
	case KindRecompressRun:
		return "recompression record"
	case KindLabelCopy:
		return "backup history file kept beside another"
	case KindQuarantined, KindQuarantineRecord:
		return "quarantined object"
	case KindVerifyRecord:
		return "verify record"
	}
	return "unknown"
}

// Key is a parsed key.
type Key struct {
	Kind    KeyKind
	Archive string
	WAL     wal.Name // KindWAL, KindRetiredWAL
	TLI     uint32   // KindRetiredRecord, KindRetiredWAL
	Backup  string   // KindBackup: the backup id
	File    string   // KindBackup: the file within the backup
	Pack    string   // KindPack: the pack id
	Digest  string   // KindLabelCopy: the SHA-256 of the content
}

// ParseKey parses a store key of the layout; anything else is ErrInvalid.
func ParseKey(key string) (Key, error) {
	bad := func(why string) (Key, error) {
		return Key{}, fmt.Errorf("%w: key %q: %s", errkind.ErrInvalid, errkind.Quote(key), why)
	}
	if err := store.ValidKey(key); err != nil {
		return Key{}, err
	}
	f := strings.Split(key, "/")
	if f[0] == repoDir {
		return Key{Kind: KindRepo}, nil
	}
	if err := ValidArchiveName(f[0]); err != nil {
		return Key{}, err
	}
	k := Key{Archive: f[0]}
	if len(f) < 2 {
		return bad("no path in the archive")
	}
	switch {
	case f[1] == walDir && len(f) == 3:
		n, err := wal.ParseName(f[2])
		if err != nil {
			return Key{}, err
		}
		k.Kind, k.WAL = KindWAL, n
	case f[1] == metaDir && len(f) == 3 && f[2] == "system":
		k.Kind = KindSystem
	case f[1] == metaDir && len(f) == 4 && f[2] == "drills":
		k.Kind = KindDrill
	case f[1] == metaDir && len(f) == 4 && f[2] == "leases":
		k.Kind = KindLease
	case f[1] == metaDir && len(f) == 4 && f[2] == "retention":
		k.Kind = KindRetention
	case f[1] == metaDir && len(f) == 4 && f[2] == "recompress":
		k.Kind = KindRecompressRun
	case f[1] == metaDir && len(f) == 4 && f[2] == "verify" && (f[3] == "result" || f[3] == "checked"):
		k.Kind = KindVerifyRecord
	case f[1] == metaDir && len(f) == 4 && f[2] == "labels":
		i := strings.LastIndexByte(f[3], '.')
		if i < 0 || len(f[3])-i-1 != 64 || strings.Trim(f[3][i+1:], "0123456789abcdef") != "" {
			return bad("want meta/labels/<.backup name>.<sha256>")
		}
		n, err := wal.ParseName(f[3][:i])
		if err != nil || n.Kind != wal.Backup {
			return bad("want meta/labels/<.backup name>.<sha256>")
		}
		k.Kind, k.WAL, k.Digest = KindLabelCopy, n, f[3][i+1:]
	case f[1] == backupsDir && len(f) == 4:
		if err := ValidBackupID(f[2]); err != nil {
			return Key{}, err
		}
		k.Kind, k.Backup, k.File = KindBackup, f[2], f[3]
	case f[1] == packsDir && len(f) == 3:
		if err := ValidPackID(f[2]); err != nil {
			return Key{}, err
		}
		k.Kind, k.Pack = KindPack, f[2]
	case f[1] == quarantineDir && len(f) == 3:
		rest, isRecord := strings.CutSuffix(f[2], ".json")
		i := strings.LastIndexByte(rest, '.')
		if i < 0 || len(rest)-i-1 != 64 || strings.Trim(rest[i+1:], "0123456789abcdef") != "" {
			return bad("want quarantine/<WAL name>.<sha256>[.json]")
		}
		n, err := wal.ParseName(rest[:i])
		if err != nil {
			return Key{}, err
		}
		k.Kind, k.WAL, k.Digest = KindQuarantined, n, rest[i+1:]
		if isRecord {
			k.Kind = KindQuarantineRecord
		}
	case f[1] == retiredDir && len(f) >= 4:
		tli, err := strconv.ParseUint(f[2], 16, 32)
		if err != nil || len(f[2]) != 8 || tli == 0 {
			return bad("bad timeline")
		}
		k.TLI = uint32(tli)
		switch {
		case len(f) == 4 && f[3] == "retired.json":
			k.Kind = KindRetiredRecord
		case len(f) == 4 && f[3] == "restored.json":
			k.Kind = KindRestoredRecord
		case len(f) == 5 && f[3] == walDir:
			n, err := wal.ParseName(f[4])
			if err != nil {
				return Key{}, err
			}
			k.Kind, k.WAL = KindRetiredWAL, n
		default:
			return bad("not a retired timeline's record or WAL file")
		}
	default:
		return bad("want wal/<WAL name>, meta/system, backups/<id>/<file>, packs/<sha256> or retired/<timeline>/...")
	}
	return k, nil
}

// Identity is the name an object under key is bound to: its key, except
// that a retired WAL file keeps the name of the live file it was.
func Identity(key string) string {
	k, err := ParseKey(key)
	if err == nil && (k.Kind == KindRetiredWAL || k.Kind == KindQuarantined) {
		return Layout{Archive: k.Archive}.WAL(k.WAL)
	}
	return key
}

// IsPack reports whether key names a pack of backup blocks: read once
// per restore, large, not worth a place in walstored's cache.
func IsPack(key string) bool {
	k, err := ParseKey(key)
	return err == nil && k.Kind == KindPack
}

// ValidBackupID checks a backup id (also a key component).
func ValidBackupID(id string) error {
	if id == "" || len(id) > 64 || store.ValidComponent(id) != nil {
		return fmt.Errorf("%w: backup id %q", errkind.ErrInvalid, errkind.Quote(id))
	}
	return nil
}
