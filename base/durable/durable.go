// Package durable holds what makes a file system change survive a crash
// (the file store's publishes, the WAL receiver's segments).
package durable

import "os"

// SyncDir fsyncs a directory, so that the names created, renamed or
// removed in it are on disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
