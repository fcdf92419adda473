// Package freelist keeps large buffers for reuse. Unlike a sync.Pool, a
// List is not emptied by the garbage collector, which a process moving
// tens of MiB per second runs often enough to drop every pooled buffer
// between two uses; and a fresh buffer costs a page fault per 4 KiB page,
// which on a virtual machine costs more CPU than hashing the bytes. A List
// holds at most its capacity of buffers, never more than were in use at
// once.
package freelist

// List is a bounded free list of byte buffers.
type List struct {
	free chan *[]byte
	size int
}

// New returns a list that keeps up to n buffers; new ones are made with
// capacity size.
func New(n, size int) *List { return &List{free: make(chan *[]byte, n), size: size} }

// Get returns an empty buffer: a kept one, or a new one.
func (l *List) Get() *[]byte {
	select {
	case b := <-l.free:
		*b = (*b)[:0]
		return b
	default:
		b := make([]byte, 0, l.size)
		return &b
	}
}

// Put keeps b for a later Get, or drops it when the list is full. The
// caller must no longer use b, nor anything that still reads it.
func (l *List) Put(b *[]byte) {
	select {
	case l.free <- b:
	default:
	}
}
