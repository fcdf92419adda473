package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/freelist"
)

// budget caps the bytes of request bodies held in memory at once. A put
// takes its share before a byte is read and gives it back when done; past
// the cap it is answered 503 with Retry-After, which clients retry.
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

// bodyDeadline cuts off a sender slower than the minimum rate: the whole
// body must arrive within 10 s plus its size at that rate.
func (s *Server) bodyDeadline(w http.ResponseWriter, size int64) {
	d := 10*time.Second + time.Duration(size/s.cfg.MinBodyRate)*time.Second
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
}

// received counts the bytes actually read from a request body.
type received struct {
	r io.Reader
	n int64
}

func (c *received) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			err = &clientError{err}
		}
	}
	return n, err
}

// clientError marks a failure to read the request body (the client went
// away, or was too slow): not the store's fault, so not a store error.
type clientError struct{ err error }

func (e *clientError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// readBody reads the rest of a body of size bytes after the header bytes
// hb into one buffer of exactly size bytes. It is called only once the
// header has been admitted (its sizes agree with Content-Length) and the
// memory budget holds size bytes for it, so the claimed length is no
// longer a bare claim; allocating it once spares the copies and fresh
// pages of a buffer grown as bytes arrive. kept, when not nil, is a
// buffer to reuse if it is large enough.
func readBody(kept *[]byte, r io.Reader, hb []byte, size int64) ([]byte, error) {
	var buf []byte
	if kept != nil && int64(cap(*kept)) >= size {
		buf = (*kept)[:size]
	} else {
		buf = make([]byte, size)
	}
	n := copy(buf, hb)
	m, err := io.ReadFull(r, buf[n:])
	switch {
	case err == nil:
		return buf, nil
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return nil, fmt.Errorf("%w: body ended after %d of %d bytes", errkind.ErrInvalid, n+m, size)
	}
	return nil, err
}

// verifying passes a streamed payload through while a goroutine verifies
// it (envelope.VerifyPayload); at its end it reports the verdict instead
// of EOF, so a store never publishes a body that failed.
type verifying struct {
	src    io.Reader
	pw     *io.PipeWriter
	result chan error
	done   bool
	err    error
}

func newVerifying(hdr envelope.Header, src io.Reader, content archive.ContentCheck) *verifying {
	r, w := io.Pipe()
	v := &verifying{src: src, pw: w, result: make(chan error, 1)}
	var cw io.Writer
	if content != nil {
		cw = content
	}
	go func() {
		err := envelope.VerifyPayloadTo(hdr, r, nil, cw)
		if err == nil && content != nil {
			err = content.Close()
		}
		r.CloseWithError(errVerifyDone)
		v.result <- err
	}()
	return v
}

var errVerifyDone = errors.New("verification finished")

func (v *verifying) Read(p []byte) (int, error) {
	if v.done {
		return 0, v.err
	}
	n, err := v.src.Read(p)
	if n > 0 {
		if _, werr := v.pw.Write(p[:n]); werr != nil && !errors.Is(werr, errVerifyDone) {
			v.finish(werr)
			return 0, v.err
		}
	}
	if errors.Is(err, io.EOF) {
		v.pw.Close()
		verr := <-v.result
		v.done = true
		v.err = io.EOF
		if verr != nil {
			v.err = verr
			return 0, verr
		}
		return n, io.EOF
	}
	if err != nil {
		v.finish(err)
		return n, err
	}
	return n, nil
}

func (v *verifying) finish(err error) {
	if v.done {
		return
	}
	v.pw.CloseWithError(err)
	<-v.result
	v.done, v.err = true, err
}

// close stops the verifier if the store stopped reading early.
func (v *verifying) close() { v.finish(errors.New("put ended")) }

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
