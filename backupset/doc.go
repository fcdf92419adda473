// Package backupset takes base backups of a PostgreSQL cluster into an
// archive and restores them into a data directory ready to recover.
//
// # Taking a backup
//
// Take checks the cluster first (wal_level, archive_mode, an
// archive_command that pushes to this archive, the system identifier the
// archive is bound to, no user tablespaces) and refuses with one clear line
// if anything is off. On a standby, which archives nothing itself, the
// archive must already be bound to its system (its primary archives
// there); its backup's stop position comes from the manifest's WAL range,
// since no .backup file is archived for it. It then runs pg_basebackup in tar format to stdout
// ("-D - -Ft -X none") and streams that tar into the repository: cut into
// 32 MiB parts, each compressed and checksummed as an envelope and uploaded
// in parallel. Nothing touches local disk.
//
// Why pg_basebackup rather than speaking the replication protocol
// directly: it is PostgreSQL's own, version-matched client of BASE_BACKUP,
// whose wire format changed in PostgreSQL 15, and it already does what a
// backup must get right (the backup label, the manifest injected into the
// tar, waiting for the WAL to be archived, page checksum reporting).
// Re-implementing it would add risk and no capability; piping its output
// keeps walstore's part to what it adds: streaming, checksums, storage.
// The binary is picked to match the server's major version.
//
// A backup counts only when every part is stored, the .backup history file
// PostgreSQL archives at the end of the backup is in the archive, and every
// segment from the backup's start to its stop LSN is archived. Only then is
// the completion record (backup.json) written, last, with put-if-absent;
// list, restore and retention ignore backups without one.
//
// # Layout
//
//	<archive>/backups/<id>/base.tar.00000 ...   the tar stream, in parts
//	<archive>/backups/<id>/backup_manifest      PostgreSQL's manifest
//	<archive>/backups/<id>/backup.json          the completion record
//
// # Restoring
//
// Restore unpacks a backup into an empty directory (parts fetched and
// decompressed in parallel, unpacked in order), with PostgreSQL's modes
// (0700 directories, 0600 files), writes restore_command and the recovery
// target into postgresql.auto.conf, and creates recovery.signal or
// standby.signal: starting PostgreSQL then recovers.
package backupset
