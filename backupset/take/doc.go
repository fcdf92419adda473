// Package take takes base backups of a PostgreSQL cluster into an
// archive, in the blocks format of package backupset, and checks a
// cluster against an archive (walstored check).
//
// Take checks the cluster first (wal_level, archive_mode, an
// archive_command that pushes to this archive, the system identifier the
// archive is bound to; user tablespaces need the local reader) and
// refuses with one clear line if anything is off. The files come from one
// of two readers, which feed the same block writer:
//
//   - pg_basebackup's tar stream (below), from anywhere that can open a
//     replication connection;
//   - the local reader (local.go, TakeOptions.PGData, on the database
//     host): pg_backup_start and pg_backup_stop over one session, the files
//     read by several goroutines, page checksums verified, tablespaces
//     followed, and PostgreSQL's backup_manifest written here as the server
//     writes it (pgmanifest.go), so that pg_verifybackup checks a restored
//     copy.
//
// On a standby, which archives nothing itself, the
// archive must already be bound to its system (its primary archives
// there); its backup's stop position comes from the manifest's WAL range
// (or, read locally, from pg_backup_stop), since no .backup file is
// archived for it. The stream reader runs pg_basebackup in
// tar format to stdout ("-D - -Ft -X none") and reads that tar as it
// streams by: nothing touches local disk.
//
// Why pg_basebackup rather than speaking the replication protocol
// directly: it is PostgreSQL's own, version-matched client of BASE_BACKUP,
// whose wire format changed in PostgreSQL 15, and it already does what a
// backup must get right (the backup label, the manifest injected into the
// tar, waiting for the WAL to be archived, page checksum reporting).
// The binary is picked to match the server's major version.
package take
