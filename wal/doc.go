// Package wal is walstore's knowledge of PostgreSQL's write-ahead log, and
// nothing else: it reads no flags, touches no store and never exits.
//
//   - Name (name.go): WAL file names (segments, .partial, .history,
//     .backup), parsed strictly, ordered by timeline and position.
//   - LSN (lsn.go): WAL positions as PostgreSQL prints them.
//   - PageHeader (pageheader.go): the long page header at the start of
//     every segment, which binds a file to its system identifier, timeline
//     and position; CheckSegment refuses a file that is not what its name
//     says.
//   - History (history.go): timeline history files and what they say about
//     which timeline holds which position.
//   - BackupLabel (backuplabel.go): the .backup files pg_backup_stop
//     archives and the backup_label of a base backup.
//
// Everything here is a pure function of its input, tested with tables and
// fuzzed (make fuzz); package waltest makes synthetic segments with valid
// headers for unit tests that should not need a PostgreSQL server.
package wal
