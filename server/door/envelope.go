package door

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// readHeader reads the envelope header off the body, keeping its bytes
// (they are stored with the rest).
func readHeader(body io.Reader) (envelope.Header, []byte, error) {
	var hb bytes.Buffer
	hdr, err := envelope.ReadHeader(io.TeeReader(body, &hb))
	if err != nil {
		return hdr, nil, refusal(err)
	}
	return hdr, hb.Bytes(), nil
}

// refusal classifies a failure to read or verify the body: the client's
// (Aborted), damaged (Damaged), or what it is.
func refusal(err error) error {
	var ab *Aborted
	switch {
	case errors.As(err, &ab):
		return err
	case errors.Is(err, errkind.ErrCorrupt):
		return &Damaged{err}
	}
	return err
}

// putHeld holds a body of size bytes in memory (within the budget),
// verifies it whole, checks its content and stores it.
func (d *Door) putHeld(ctx context.Context, res Result, size int64, hb []byte, body io.Reader) (Result, error) {
	if !d.budget.take(size) {
		return res, d.busy()
	}
	defer d.budget.give(size)
	// A pack's buffer is reused once the store has it: packs are large (a
	// fresh 32 MiB buffer is 8192 page faults) and read back once, by a
	// restore, so they are not cached either.
	var kept *[]byte
	cached := false
	switch {
	case res.K.Kind == archive.KindPack:
		kept = packBodies.Get()
	case size >= walBodyMin && size <= walBodyCap:
		kept, cached = walBodies.Get(), true
	}
	buf, err := readBody(kept, body, hb, size)
	if err != nil {
		return res, refusal(err)
	}
	seg := archive.SegmentCheck(res.K, res.Header)
	var cw io.Writer
	if seg != nil {
		cw = seg
	}
	if err := envelope.VerifyPayloadBytesTo(res.Header, buf[res.Header.Size():], nil, cw); err != nil {
		return res, refusal(err)
	}
	if seg != nil {
		if err := seg.Close(); err != nil {
			return res, &BadWAL{err}
		}
	}
	if err := d.checkSmall(ctx, res.K, res.Header, buf); err != nil {
		return res, err
	}
	return d.store(ctx, res, buf, kept, cached)
}

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

// putStreamed verifies a body too large to hold as it streams into the
// store, which publishes it only if the stream ends without an error.
// Its decoder holds a window of up to 64 MiB (whatever the frame
// declares): that is taken from the memory budget too, so that many
// streams at once are told to retry instead of growing walstored past
// its limit.
func (d *Door) putStreamed(ctx context.Context, res Result, size int64, hb []byte, body io.Reader) (Result, error) {
	reserve := streamReserve(res.Header)
	if !d.budget.take(reserve) {
		return res, d.busy()
	}
	defer d.budget.give(reserve)
	v := newVerifying(res.Header, body, archive.SegmentCheck(res.K, res.Header))
	defer v.close()
	var err error
	res.Outcome, err = archive.PutEnvelope(ctx, d.cfg.Store, res.Key, res.Header, store.Stream(io.MultiReader(bytes.NewReader(hb), v), size))
	var bw *BadWAL
	switch {
	case err != nil && v.done && errors.As(v.err, &bw):
		return res, v.err
	case errors.Is(err, errkind.ErrCorrupt) && v.done && v.err != io.EOF:
		return res, refusal(err)
	}
	return res, err
}

// verifying passes a streamed payload through while a goroutine verifies
// it (envelope.VerifyPayload, and the segment's content); at its end it
// reports the verdict instead of EOF, so a store never publishes a body
// that failed.
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
			if cerr := content.Close(); cerr != nil {
				err = &BadWAL{cerr} // the store sees the stream fail: stored nowhere
			}
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
