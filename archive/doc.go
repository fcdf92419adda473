// Package archive is walstore's domain: what a WAL file is, how it is
// checked, how it is packed into a stored object, and the Store interface
// every storage backend implements.
//
// The pieces, from the bottom up:
//
//   - Name (name.go): PostgreSQL WAL file names (segments, .partial,
//     .history, .backup), parsed strictly, ordered by (timeline, log, seg).
//   - PageHeader (pageheader.go): the long page header at the start of every
//     segment, which binds a file to its system identifier, timeline and
//     position; a file whose header does not match its name is refused.
//   - Envelope (envelope.go): the self-describing object format: a fixed
//     header with the raw size, the SHA-256 of the raw bytes and the system
//     identifier, then the zstd payload. Every object in a repository is an
//     envelope, so anything stored can be verified without context.
//   - Store (store.go): a small write-once object store (put-if-absent, get,
//     stat, list, delete). Backends live in sub-packages (filestore, s3store,
//     httpstore) and all pass the same conformance suite (storetest).
//   - PutObject (put.go): the one place where "same digest → already
//     archived, other digest → conflict" is decided, for every store.
//   - Archive (archive.go): one named archive inside a repository, bound to
//     one PostgreSQL system identifier.
//
// Nothing here reads flags or the environment, and nothing exits: callers
// decide policy and exit codes.
package archive
