package push

import (
	"syscall"
	"unsafe"
)

// madvHugepage is MADV_HUGEPAGE.
const madvHugepage = 14

// hugeBuffer returns n bytes of anonymous memory that the kernel may back
// with 2 MiB pages (where transparent huge pages are "always" or
// "madvise"), or nil. A walpush call encodes one segment and exits: its
// output buffer is fresh memory, one page fault per 4 KiB page, and a
// fault costs some 20 µs on a virtual machine; with huge pages, a 16 MiB
// segment's envelope takes a handful instead of about 2000 (measured: see
// the README's benchmarks). The memory is never returned: the process
// ends.
func hugeBuffer(n int) []byte {
	const huge = 2 << 20
	size := (n + huge - 1) &^ (huge - 1)
	b, err := syscall.Mmap(-1, 0, size+huge, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil
	}
	// Start on a 2 MiB boundary, so that whole huge pages fit.
	off := 0
	if r := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) % huge); r != 0 {
		off = huge - r
	}
	b = b[off : off+size]
	syscall.Madvise(b, madvHugepage)
	return b
}
