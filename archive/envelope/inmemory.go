package envelope

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/walstore/walstore/base/errkind"
)

// Checking a payload that is already in memory (walstored's door holds
// every body up to its buffer limit) does not need the streaming path's
// copies: the payload is hashed where it lies and decoded in one call
// straight into a scratch buffer of its raw size, which is then hashed.
// Profiling walstored under archive_command load showed the streaming
// path spending as much CPU on copies between readers and on fresh pages
// as on the decode and the two SHA-256s that are the check itself.

// maxScratch is the largest raw size checked in memory; larger objects
// take the streaming path.
const maxScratch = 64 << 20

var (
	// allDecoder decodes whole payloads (DecodeAll is safe for concurrent
	// use). The cap limit makes it stop at the capacity it is given, the
	// raw size the header promises, however the payload was crafted.
	// Made on first use: walpush and walfetch never need it, and a
	// process per segment should not pay for it.
	allDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderMaxMemory(maxScratch),
			zstd.WithDecoderMaxWindow(64<<20),
		)
		if err != nil {
			panic(err) // only on invalid options, which are constant here
		}
		return d
	})
	// scratch holds one buffer per core that may decode at once: taking
	// one waits while all are in use (more would hold memory without
	// going faster). They are kept, not pooled: a sync.Pool is emptied
	// by every garbage collection, and a fresh 16 MiB buffer costs 4096
	// page faults.
	scratch = func() chan *[]byte {
		c := make(chan *[]byte, runtime.GOMAXPROCS(0))
		for range cap(c) {
			c <- new([]byte)
		}
		return c
	}()
)

func getScratch(n int64) *[]byte {
	p := <-scratch
	if int64(cap(*p)) < n {
		*p = make([]byte, 0, n)
	}
	return p
}

func putScratch(p *[]byte) { scratch <- p }

// VerifyPayloadBytes is VerifyPayload for a payload held in memory, with
// the same verdicts. Encrypted payloads and very large ones take the
// streaming path.
func VerifyPayloadBytes(hdr Header, payload []byte, kr *Keyring) error {
	return VerifyPayloadBytesTo(hdr, payload, kr, nil)
}

// VerifyPayloadBytesTo is VerifyPayloadBytes that also writes the raw
// content to w (a content check that reads it as it passes: walstored's
// WAL check), when w is not nil. w's errors are ignored: a check keeps
// its own verdict.
func VerifyPayloadBytesTo(hdr Header, payload []byte, kr *Keyring, w io.Writer) error {
	if hdr.Encrypted() || hdr.RawSize > maxScratch || (hdr.Compression != Zstd && hdr.Compression != NoCompression) {
		return VerifyPayloadTo(hdr, bytes.NewReader(payload), kr, w)
	}
	switch n := int64(len(payload)); {
	case n < hdr.PayloadSize:
		return fmt.Errorf("%w: payload truncated (%d bytes missing)", errkind.ErrCorrupt, hdr.PayloadSize-n)
	case n > hdr.PayloadSize:
		return fmt.Errorf("%w: data after the end of the payload", errkind.ErrCorrupt)
	}
	if hdr.Version >= 2 && Digest(sha256.Sum256(payload)) != hdr.PayloadDigest {
		return fmt.Errorf("%w: the payload does not match the checksum in its header", errkind.ErrCorrupt)
	}
	raw := payload
	if hdr.Compression == Zstd {
		p := getScratch(hdr.RawSize)
		defer putScratch(p)
		var err error
		raw, err = allDecoder().DecodeAll(payload, (*p)[:0:hdr.RawSize])
		switch {
		case errors.Is(err, zstd.ErrDecoderSizeExceeded):
			return fmt.Errorf("%w: payload expands beyond the %d bytes its header promises", errkind.ErrCorrupt, hdr.RawSize)
		case err != nil:
			return fmt.Errorf("%w: %v", errkind.ErrCorrupt, err)
		}
	}
	if int64(len(raw)) != hdr.RawSize {
		return fmt.Errorf("%w: payload gave %d bytes, header says %d", errkind.ErrCorrupt, len(raw), hdr.RawSize)
	}
	if sum := Digest(sha256.Sum256(raw)); sum != hdr.Digest {
		return fmt.Errorf("%w: SHA-256 of the content is %s, header says %s", errkind.ErrCorrupt, sum, hdr.Digest)
	}
	if w != nil {
		w.Write(raw)
	}
	return nil
}
