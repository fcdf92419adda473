package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/walstore/walstore/base/errkind"
)

// Body is what Put stores: a reader, its exact length, and a way back to
// its first byte, so that a store (or the retry wrapper) can send it again
// without any layer copying it first. restic's RewindReader is the model.
type Body interface {
	io.Reader
	// Len is the number of bytes the body holds.
	Len() int64
	// Rewind goes back to the first byte. A body that can be read only
	// once (a network stream) fails with ErrNotRewindable once read.
	Rewind() error
}

// ErrNotRewindable: the body was a stream and has been read.
var ErrNotRewindable = errors.New("body can be read only once")

// ReaderAtBody is an optional interface of bodies backed by memory or a
// file: each caller can read its own independent view, so several stores
// can be sent one body at once with no copy.
type ReaderAtBody interface {
	Body
	ReaderAt() io.ReaderAt
}

// Bytes is a body held in memory. Wrappers that keep what they store (the
// cache) take the slice by reference through its Bytes method, so the
// caller must not change b afterwards.
func Bytes(b []byte) Body {
	r := bytes.NewReader(b)
	return &bytesBody{sectionBody{SectionReader: io.NewSectionReader(r, 0, int64(len(b))), ra: r}, b}
}

type bytesBody struct {
	sectionBody
	b []byte
}

// Bytes returns the body's bytes (not a copy).
func (b *bytesBody) Bytes() []byte { return b.b }

// Section is a body of n bytes read from r at offset 0 (a file, a buffer).
func Section(r io.ReaderAt, n int64) Body {
	return &sectionBody{SectionReader: io.NewSectionReader(r, 0, n), ra: r}
}

type sectionBody struct {
	*io.SectionReader
	ra io.ReaderAt
}

func (b *sectionBody) Len() int64 { return b.Size() }
func (b *sectionBody) Rewind() error {
	_, err := b.Seek(0, io.SeekStart)
	return err
}
func (b *sectionBody) ReaderAt() io.ReaderAt { return io.NewSectionReader(b.ra, 0, b.Size()) }

// Stream is a body read once from r (a request body). It can be rewound
// only while nothing has been read from it.
func Stream(r io.Reader, n int64) Body { return &streamBody{r: r, n: n} }

type streamBody struct {
	r    io.Reader
	n    int64
	read bool
}

func (b *streamBody) Read(p []byte) (int, error) {
	if len(p) > 0 {
		b.read = true
	}
	return b.r.Read(p)
}
func (b *streamBody) Len() int64 { return b.n }
func (b *streamBody) Rewind() error {
	if b.read {
		return ErrNotRewindable
	}
	return nil
}

// Exact wraps a body's reader so that reading it yields exactly body.Len()
// bytes: a body that ends early or runs longer fails with ErrInvalid
// instead of producing a short or long object. The check for a longer
// body is made before the last bytes are handed on, so that a store (or a
// server at the other end of a connection) never receives a complete
// object from a body that was not. Stores read bodies through it.
func Exact(b Body) io.Reader { return &exactBody{b: b, left: b.Len()} }

type exactBody struct {
	b    Body
	left int64
	done bool
}

func (e *exactBody) Read(p []byte) (int, error) {
	if e.left == 0 {
		if !e.done {
			if err := e.checkEnd(); err != nil {
				return 0, err
			}
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.b.Read(p)
	e.left -= int64(n)
	if errors.Is(err, io.EOF) {
		if e.left > 0 {
			return n, fmt.Errorf("%w: body ended %d bytes short of its declared %d", errkind.ErrInvalid, e.left, e.b.Len())
		}
		e.done = true
		err = nil
	}
	if err == nil && e.left == 0 && !e.done {
		if cerr := e.checkEnd(); cerr != nil {
			return 0, cerr
		}
	}
	return n, err
}

// checkEnd makes sure the body holds nothing past its length.
func (e *exactBody) checkEnd() error {
	e.done = true
	var one [1]byte
	n, err := io.ReadFull(e.b, one[:])
	if n > 0 {
		return fmt.Errorf("%w: body is longer than its declared %d bytes", errkind.ErrInvalid, e.b.Len())
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	return nil
}

// Shared is memory a body was read into that goes back to its owner (a
// free list) once nobody holds it any more: the caller that made it,
// until its Put returned; a wrapper that keeps the body (the cache),
// while it keeps it; each reader of the kept copy, until it is closed.
// A fresh buffer for a 16 MiB segment costs thousands of page faults,
// so walstored recycles the buffers of the WAL it caches this way.
//
// Whoever is not sure that nothing reads the memory any more (a request
// that failed may still be reading it) does not release its hold: the
// memory is then left to the garbage collector, never recycled.
type Shared struct {
	b    []byte
	refs atomic.Int64
	free func([]byte)
}

// NewShared holds b for its maker; free gets it back when the last hold
// is released.
func NewShared(b []byte, free func([]byte)) *Shared {
	s := &Shared{b: b, free: free}
	s.refs.Store(1)
	return s
}

// Bytes returns the memory (not a copy), valid while a hold is kept.
func (s *Shared) Bytes() []byte { return s.b }

// Hold takes one more hold; the caller must have one already.
func (s *Shared) Hold() { s.refs.Add(1) }

// Release gives up one hold; the last gives the memory back.
func (s *Shared) Release() {
	switch n := s.refs.Add(-1); {
	case n == 0 && s.free != nil:
		s.free(s.b)
	case n < 0:
		panic("store: Shared released more often than held")
	}
}

// SharedBytes is Bytes for a body in shared memory: a wrapper that keeps
// it takes a hold of its own (through the Shared method), which the
// maker's Release then does not end.
func SharedBytes(s *Shared) Body {
	return &sharedBody{bytesBody: Bytes(s.b).(*bytesBody), s: s}
}

type sharedBody struct {
	*bytesBody
	s *Shared
}

func (b *sharedBody) Shared() *Shared { return b.s }
