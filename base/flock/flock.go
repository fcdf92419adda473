// Package flock wraps flock(2) for the clients' detached workers: a lock
// held by a process is released by the kernel when it dies, so a crashed
// prefetcher or pusher never leaves a stale lock behind.
package flock

import (
	"context"
	"os"
	"syscall"
	"time"
)

// Lock is a held lock.
type Lock struct{ f *os.File }

// TryLock takes an exclusive lock on path (created if missing) without
// waiting; ok is false when another process holds it.
func TryLock(path string) (l *Lock, ok bool) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return &Lock{f: f}, true
}

// Unlock releases the lock; remove also deletes the file (per-item claims).
func (l *Lock) Unlock(remove bool) {
	if l == nil {
		return
	}
	if remove {
		os.Remove(l.f.Name())
	}
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// Held reports whether some process holds a lock on path.
func Held(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// WaitReleased waits until nobody holds path (or it is gone), polling
// every few milliseconds; it returns false if ctx ended first.
func WaitReleased(ctx context.Context, path string) bool {
	for Held(path) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(3 * time.Millisecond):
		}
	}
	return true
}
