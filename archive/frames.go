package archive

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// headRead is how much of an object the first ranged read of a framed
// object asks for: its header and, for a pack, its whole frame index
// (16 + 8 bytes per frame; a pack has at most 130 frames).
const headRead = 16 << 10

// Frames reads the header and the frame index of the framed object at
// key (a backup's pack, see envelope.EncodeFramesSum) with ranged reads,
// and none of its frames. The header is checked, and its binding to key;
// the frames are not (the caller checks what it decodes).
// envelope.ErrNotFramed: the object can only be read whole (written
// whole, or encrypted).
func (a *Archive) Frames(ctx context.Context, key string) (envelope.Header, []envelope.Frame, error) {
	head, err := readRange(ctx, a.Store, key, 0, headRead, false, nil)
	if err != nil {
		return envelope.Header{}, nil, err
	}
	hdr, err := envelope.ParseHeader(head)
	if err == nil {
		err = hdr.CheckName(Identity(key))
	}
	if err != nil {
		return hdr, nil, fmt.Errorf("%s: %w", key, err)
	}
	payload := head[min(int64(len(head)), hdr.Size()):]
	frames, need, err := envelope.Frames(hdr, payload)
	if err == nil && need > 0 {
		if payload, err = readRange(ctx, a.Store, key, hdr.Size(), int64(need), true, nil); err == nil {
			frames, _, err = envelope.Frames(hdr, payload)
		}
	}
	if err != nil {
		return hdr, nil, fmt.Errorf("%s: %w", key, err)
	}
	return hdr, frames, nil
}

// ReadFrames reads the payload bytes of frames first to last (in order,
// contiguous in the payload) of the object at key into buf (grown if
// need be), and returns them.
func (a *Archive) ReadFrames(ctx context.Context, key string, hdr envelope.Header, first, last envelope.Frame, buf []byte) ([]byte, error) {
	n := last.Off + last.Len - first.Off
	if n < 0 || last.Off+last.Len > hdr.PayloadSize {
		return nil, fmt.Errorf("%w: %s: frames at %d..%d of a %d-byte payload", errkind.ErrCorrupt, key, first.Off, last.Off+last.Len, hdr.PayloadSize)
	}
	return readRange(ctx, a.Store, key, hdr.Size()+first.Off, n, true, buf)
}

// readRange reads n bytes of key from off into buf (grown if need be):
// exactly n, or (exact false) up to n when the object ends first.
func readRange(ctx context.Context, s store.Store, key string, off, n int64, exact bool, buf []byte) ([]byte, error) {
	rc, err := store.GetRange(ctx, s, key, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	m, err := io.ReadFull(rc, buf)
	if !exact && errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %s ends early", errkind.ErrCorrupt, key)
		}
		return nil, err
	}
	return buf[:m], nil
}
