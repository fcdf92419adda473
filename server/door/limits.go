package door

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/freelist"
)

// CheckLength: a put declares its length, and no more than an object
// may have.
func CheckLength(key string, size int64) error {
	switch {
	case size < 0:
		return ErrNoLength
	case size > envelope.MaxObjectSize:
		return fmt.Errorf("%w: %s: %d bytes is more than the %d an object may have", ErrTooLarge, key, size, int64(envelope.MaxObjectSize))
	}
	return nil
}

// budget caps the bytes of request bodies held in memory at once. A put
// takes its share before a byte is read and gives it back when done; past
// the cap it is refused with ErrBusy, which clients retry.
type budget struct {
	limit int64
	mu    sync.Mutex
	used  int64
}

func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// busy is the refusal when the budget is spent.
func (d *Door) busy() error {
	return fmt.Errorf("%w: walstored holds as much request memory as it may (%d MiB); retry", ErrBusy, d.cfg.MemoryLimit>>20)
}

// streamReserve is the memory a streamed body's check may hold: a zstd
// decoder's window (capped at 64 MiB by the decoder) and its buffers; for
// an uncompressed or encrypted one (checked by its digest), buffers only.
func streamReserve(hdr envelope.Header) int64 {
	if hdr.Compression == envelope.NoCompression || hdr.Encrypted() {
		return 1 << 20
	}
	return min(hdr.RawSize, 64<<20) + 2<<20
}

// packBodies keeps the buffers of pack bodies for the next pack, one per
// core (a pack's check at the door is CPU-bound). walstored holds them
// once a backup has run: GOMAXPROCS times the largest pack body.
var packBodies = freelist.New(runtime.GOMAXPROCS(0), 0)

// walBodies keeps the buffers of the bodies walstored caches after
// storing them (WAL segments, 128 KiB to walBodyCap): the cache holds each
// (store.Shared) while it keeps it and while a standby reads it, and
// gives it back here when it evicts it. A fresh buffer per pushed
// segment cost some 2000 page faults, about 40 ms of CPU on the test
// machine; with the buffers recycled a pushed segment costs none.
var walBodies = freelist.New(walBodyKept, walBodyCap)

const (
	walBodyCap  = 17 << 20  // a 16 MiB segment's envelope, stored raw at worst
	walBodyMin  = 128 << 10 // smaller bodies (history files, records) are not worth a whole buffer
	walBodyKept = 4
)

// recycleWALBody is the Shared free function of walBodies' buffers.
func recycleWALBody(b []byte) {
	b = b[:0]
	walBodies.Put(&b)
}
