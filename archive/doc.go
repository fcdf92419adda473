// Package archive is tier 2 of a walstore repository: what the bytes of
// tier 1 (package store) mean. It decides which object goes under which
// key (Layout), packs every object into an envelope bound to its key
// (package envelope: zstd, SHA-256, encryption), decides idempotency
// ("same content: already archived; other content: a conflict naming
// both digests") in one place, binds each archive to one PostgreSQL system,
// repairs a damaged copy when the same content is pushed again, and keeps
// the records of base backups and retired timelines.
//
// One repository holds many archives, one per PostgreSQL cluster. An
// Archive is the handle on one of them; everything that reads or writes
// an archive (walpush, walfetch, walstored's door, backups, the catalog,
// retention) goes through it, so the rules are written once:
//
//	layout.go    keys: archive → WAL name, system binding, backup id and file, pack, retired timeline
//	archive.go   the Archive handle: binding, WAL puts and verified reads
//	put.go       idempotent put, and repair of a damaged copy
//	backups.go   backup completion records
//	packs.go     backups' contents, packs of blocks shared by backups, the sweep of unused packs
//	records.go   writing, reading and pruning the JSON records (drills, runs, verify results)
//	retentionruns.go, recompressruns.go, drills.go, lease.go   the archive's records and leases
//	retired.go   timelines taken out of recovery's view
//	rules.go     the archive's rules that walstored's door (server/door) asks before a body reaches a store
//	repo.go      the repository as a whole: its marker, its archives
//
// Nothing here reads flags or the environment, and nothing exits: callers
// decide policy and exit codes.
package archive
