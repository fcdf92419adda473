//go:build !linux

package push

// hugeBuffer: only Linux has transparent huge pages.
func hugeBuffer(int) []byte { return nil }
