// Package backupset is walstore's base backups in blocks: the format that
// taking and restoring share (below), and restoring a backup into a data
// directory ready to recover (Restore, delta restores, recovery targets,
// the settings a restore rewrites). By role:
//
//	backupset        the format, and restore (walfetch restore)
//	backupset/take   taking a backup, and checking a cluster against an
//	                 archive (walstored backup, walstored check)
//	backupset/drill  a restore drill (walstored drill)
//
// Only take and drill talk to PostgreSQL (pgx, pg_basebackup, postgres),
// so walfetch, which restores, links neither.
//
// # Blocks: every backup incremental, every backup a full one
//
// Each file of the tar stream is cut into blocks of BlockSize (128 KiB,
// 16 PostgreSQL pages; a file's last block is shorter), and each block is
// known by its SHA-256. A block the archive already holds (in the newest
// completed backup, or stored by an interrupted one) is only referred to;
// a new one is appended to a pack, and a pack (PackSize, 32 MiB of raw
// blocks) is compressed, checksummed and stored as one object named by
// the SHA-256 of its content, Jobs packs at once. A pack is compressed in
// frames of up to 512 KiB of whole blocks, with an index of its frames
// first (envelope.EncodeFramesSum), so that a reader can fetch and decode
// a few of its blocks without the rest. The backup's contents
// list every directory and file with its blocks (pack, offset, length,
// SHA-256). So every backup costs only what changed, yet restores on its
// own: there is no chain of backups to keep or replay, and retention
// deletes a backup and sweeps the packs no other backup uses (see
// archive/packs.go).
//
// The trade-off is the block size. PostgreSQL changes a table in 8 KiB
// pages; a block is unchanged only if all 16 of its pages are.
//   - An append-mostly table (history, logs, events) changes at its end
//     only (plus the pages VACUUM marks all-visible or frozen once): its
//     new backup is the new blocks, whatever the block size.
//   - A table under scattered updates changes almost every block: with 60
//     rows to a page, updating 1% of the rows touches about half the
//     pages and nearly every 128 KiB block. Page-sized blocks would store
//     half as much there, but cost 16 times the index: the contents
//     (about 100 bytes per block) and the index a backup holds in memory
//     (about as much) would grow to 13 MB per GiB of data, 26 GB for a
//     2 TiB cluster. At 128 KiB both are 0.8 MB per GiB.
//
// Packs make few large objects (32 per GiB of new raw data), which
// object stores bill and list cheaply. Their cost is that a pack stays
// while any of its blocks is used: a table updated between two backups
// leaves its old blocks inside packs that also hold live ones until every
// backup using them is gone (no repacking yet).
//
// # Completion
//
// A backup counts only when every pack it uses is stored, the .backup
// history file PostgreSQL archives at the end of the backup is in the
// archive, and every segment from the backup's start to its stop LSN is
// archived. Only then is the completion record (backup.json) written,
// last, with put-if-absent; list, restore and retention ignore backups
// without one. A backup that fails or is killed leaves its packs and
// Progress records: the same command run again uploads none of them
// again, and retention removes an abandoned one after a day.
//
// # Layout
//
//	<archive>/backups/<id>/contents         its directories and files, with their blocks
//	<archive>/backups/<id>/progress.NNNNN   the packs it stored, while it ran
//	<archive>/backups/<id>/backup_manifest  PostgreSQL's manifest
//	<archive>/backups/<id>/backup.json      the completion record
//	<archive>/packs/<sha256>                packs, shared by the archive's backups
//	<archive>/backups/<id>/base.tar.00000   older backups: the tar stream, in parts
//
// # Restoring
//
// Restore lays a backup into an empty directory: the directories and
// files first, each at its size, then Jobs workers each fetch a whole
// pack and write its blocks where they belong (a pack of which less than
// half is needed, such as an older backup's pack in a newer backup, is
// read in part: its index, then only the frames holding the needed
// blocks, each block checked against its SHA-256; a pack that cannot be
// read so is read whole) (an older backup's tar
// parts are fetched in parallel and unpacked in order), with PostgreSQL's modes
// (0700 directories, 0600 files), writes restore_command and the recovery
// target into postgresql.auto.conf, and creates recovery.signal or
// standby.signal: starting PostgreSQL then recovers.
package backupset
