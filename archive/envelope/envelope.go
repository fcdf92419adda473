// Package envelope is the format of every object in a walstore repository:
// a self-describing header, then the payload (the raw bytes, compressed
// with zstd, optionally encrypted). Whatever reads an object can check it
// on its own: how long the payload is, how many bytes it must decode to,
// what they must hash to, and (since version 2) under which name the
// object was written, so that an object copied or moved to another name
// is refused as corrupt.
//
// Version 2, written by this code:
//
//	offset size field
//	0      6    magic "WALSTR"
//	6      1    format version (2)
//	7      1    compression (0 none, 1 zstd)
//	8      2    flags (bit 0: payload encrypted)
//	10     2    length n of the name that follows the fixed header
//	12     8    raw size in bytes
//	20     8    payload size in bytes
//	28     8    PostgreSQL system identifier, 0 when not known
//	36     32   SHA-256 of the raw bytes
//	68     32   SHA-256 of the payload as stored
//	100    4    CRC-32C of bytes 0..99 and of the name
//	104    n    the name the object is bound to (its key, e.g. main/wal/00000002.history)
//	104+n  ...  payload
//
// Version 1 (read, never written) is the first 72 bytes of that layout
// without the name and the payload checksum: 36 32 raw SHA-256, 68 4 CRC.
// Integers are little-endian.
//
// The payload checksum lets anyone holding no key (walstored at its door,
// verify on the storage host) prove that the stored bytes are the ones the
// client wrote. Encrypted payloads also bind the name in every chunk's
// authenticated data (crypt.go).
package envelope

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/wal"
)

const (
	magic = "WALSTR"
	// V1HeaderSize is the size of a version 1 header.
	V1HeaderSize = 72
	// FixedSize is the size of a version 2 header before its name.
	FixedSize = 104
	// MaxNameLen bounds the bound name (a store key).
	MaxNameLen = 512
	// MaxHeaderSize is the largest header of any version.
	MaxHeaderSize = FixedSize + MaxNameLen
	// Version is the format version this code writes.
	Version = 2
)

// Header flags.
const (
	FlagEncrypted uint16 = 1 << 0
)

// MaxRawSize bounds the raw size of one object: the largest WAL segment
// PostgreSQL allows. Larger data (base backups) is split into parts.
const MaxRawSize = wal.MaxSegmentSize

// MaxPayloadSize bounds the payload of one object: the worst-case zstd
// expansion of MaxRawSize plus room for encryption overhead.
const MaxPayloadSize = MaxRawSize + MaxRawSize/64 + 1<<20

// MaxObjectSize is the largest valid envelope.
const MaxObjectSize = MaxHeaderSize + MaxPayloadSize

// Compression names a payload encoding.
type Compression uint8

const (
	NoCompression Compression = 0
	Zstd          Compression = 1
)

func (c Compression) String() string {
	switch c {
	case NoCompression:
		return "none"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// Digest is a SHA-256.
type Digest [sha256.Size]byte

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// Short is the first 12 hex digits, enough for a log line.
func (d Digest) Short() string { return d.String()[:12] }

// IsZero reports an unset digest.
func (d Digest) IsZero() bool { return d == Digest{} }

// ParseDigest parses 64 hex digits.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*len(d) {
		return d, fmt.Errorf("%w: %q is not a SHA-256 digest", errkind.ErrInvalid, errkind.Quote(s))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("%w: %q is not a SHA-256 digest", errkind.ErrInvalid, errkind.Quote(s))
	}
	return d, nil
}

// Header is the decoded envelope header.
type Header struct {
	Version     uint8
	Compression Compression
	Flags       uint16
	RawSize     int64
	PayloadSize int64
	SystemID    uint64
	Digest      Digest // SHA-256 of the raw bytes
	// PayloadDigest is the SHA-256 of the payload (version 2; zero in
	// version 1, whose encrypted payloads carry it inside).
	PayloadDigest Digest
	// Name is what the object is bound to (version 2; "" in version 1).
	Name string
}

// Size is the size of the header itself.
func (h Header) Size() int64 {
	if h.Version == 1 {
		return V1HeaderSize
	}
	return FixedSize + int64(len(h.Name))
}

// ObjectSize is the total size of the envelope the header describes.
func (h Header) ObjectSize() int64 { return h.Size() + h.PayloadSize }

// Encrypted reports whether the payload is encrypted.
func (h Header) Encrypted() bool { return h.Flags&FlagEncrypted != 0 }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Marshal returns the version 2 header.
func (h Header) Marshal() []byte {
	b := make([]byte, FixedSize+len(h.Name))
	le := binary.LittleEndian
	copy(b[0:6], magic)
	b[6] = Version
	b[7] = byte(h.Compression)
	le.PutUint16(b[8:], h.Flags)
	le.PutUint16(b[10:], uint16(len(h.Name)))
	le.PutUint64(b[12:], uint64(h.RawSize))
	le.PutUint64(b[20:], uint64(h.PayloadSize))
	le.PutUint64(b[28:], h.SystemID)
	copy(b[36:68], h.Digest[:])
	copy(b[68:100], h.PayloadDigest[:])
	copy(b[FixedSize:], h.Name)
	crc := crc32.Update(crc32.Checksum(b[:100], castagnoli), castagnoli, b[FixedSize:])
	le.PutUint32(b[100:], crc)
	return b
}

// ReadHeader reads and checks the header at the start of r (either
// version). It never trusts a size field beyond the format's limits.
func ReadHeader(r io.Reader) (Header, error) {
	var b [FixedSize]byte
	if _, err := io.ReadFull(r, b[:8]); err != nil {
		return Header{}, short(err)
	}
	if string(b[0:6]) != magic {
		return Header{}, fmt.Errorf("%w: not a walstore object (bad magic)", errkind.ErrCorrupt)
	}
	switch b[6] {
	case 1:
		if _, err := io.ReadFull(r, b[8:V1HeaderSize]); err != nil {
			return Header{}, short(err)
		}
		return parseV1(b[:V1HeaderSize])
	case 2:
		if _, err := io.ReadFull(r, b[8:FixedSize]); err != nil {
			return Header{}, short(err)
		}
		n := int(binary.LittleEndian.Uint16(b[10:]))
		if n > MaxNameLen {
			return Header{}, fmt.Errorf("%w: object header names %d bytes", errkind.ErrCorrupt, n)
		}
		name := make([]byte, n)
		if _, err := io.ReadFull(r, name); err != nil {
			return Header{}, short(err)
		}
		return parseV2(b[:], name)
	}
	return Header{}, fmt.Errorf("%w: object format version %d is not supported (a newer walstore wrote it?)", errkind.ErrCorrupt, b[6])
}

// ParseHeader decodes the header at the start of b.
func ParseHeader(b []byte) (Header, error) { return ReadHeader(bytes.NewReader(b)) }

func short(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: object shorter than its header", errkind.ErrCorrupt)
	}
	return err
}

func parseV1(b []byte) (Header, error) {
	le := binary.LittleEndian
	if got, want := le.Uint32(b[68:]), crc32.Checksum(b[:68], castagnoli); got != want {
		return Header{}, fmt.Errorf("%w: object header checksum mismatch", errkind.ErrCorrupt)
	}
	h := Header{
		Version:     1,
		Compression: Compression(b[7]),
		Flags:       le.Uint16(b[8:]),
		RawSize:     int64(le.Uint64(b[12:])),
		PayloadSize: int64(le.Uint64(b[20:])),
		SystemID:    le.Uint64(b[28:]),
	}
	copy(h.Digest[:], b[36:68])
	if le.Uint16(b[10:]) != 0 {
		return h, fmt.Errorf("%w: reserved header bytes set", errkind.ErrCorrupt)
	}
	return h, h.check()
}

func parseV2(b, name []byte) (Header, error) {
	le := binary.LittleEndian
	crc := crc32.Update(crc32.Checksum(b[:100], castagnoli), castagnoli, name)
	if le.Uint32(b[100:]) != crc {
		return Header{}, fmt.Errorf("%w: object header checksum mismatch", errkind.ErrCorrupt)
	}
	h := Header{
		Version:     2,
		Compression: Compression(b[7]),
		Flags:       le.Uint16(b[8:]),
		RawSize:     int64(le.Uint64(b[12:])),
		PayloadSize: int64(le.Uint64(b[20:])),
		SystemID:    le.Uint64(b[28:]),
		Name:        string(name),
	}
	copy(h.Digest[:], b[36:68])
	copy(h.PayloadDigest[:], b[68:100])
	return h, h.check()
}

func (h Header) check() error {
	switch {
	case h.Compression != NoCompression && h.Compression != Zstd:
		return fmt.Errorf("%w: unknown compression %d", errkind.ErrCorrupt, h.Compression)
	case h.Flags&^FlagEncrypted != 0:
		return fmt.Errorf("%w: unknown object flags 0x%04X", errkind.ErrCorrupt, h.Flags)
	case h.RawSize < 0 || h.RawSize > MaxRawSize:
		return fmt.Errorf("%w: raw size %d out of range", errkind.ErrCorrupt, h.RawSize)
	case h.PayloadSize < 0 || h.PayloadSize > MaxPayloadSize:
		return fmt.Errorf("%w: payload size %d out of range", errkind.ErrCorrupt, h.PayloadSize)
	case h.Compression == NoCompression && !h.Encrypted() && h.PayloadSize != h.RawSize:
		return fmt.Errorf("%w: uncompressed payload of %d bytes for %d raw bytes", errkind.ErrCorrupt, h.PayloadSize, h.RawSize)
	}
	return nil
}

// CheckName checks that the object is bound to name: a version 2 object
// read under another name is corrupt (moved, copied or swapped in the
// store). Version 1 objects carry no name and pass.
func (h Header) CheckName(name string) error {
	if h.Version >= 2 && h.Name != name {
		return fmt.Errorf("%w: the object was written as %q, not %q (moved or swapped in the store)", errkind.ErrCorrupt, errkind.Quote(h.Name), errkind.Quote(name))
	}
	return nil
}

// Object is an encoded envelope held in memory: header and payload in one
// buffer, so it can be sent (and re-sent after a network error) without
// touching the source file again.
type Object struct {
	Header Header
	buf    []byte // header followed by payload
}

// Size is the number of bytes of the encoded object.
func (o *Object) Size() int64 { return int64(len(o.buf)) }

// Bytes returns the encoded object; the caller must not modify it.
func (o *Object) Bytes() []byte { return o.buf }

// Encoder packs raw bytes into envelopes. It holds a zstd encoder that is
// reused across objects; an Encoder is safe for one goroutine at a time.
type Encoder struct {
	Compression Compression
	SystemID    uint64 // recorded in every header; 0 when unknown
	// Key, when set, encrypts the payload (after compression).
	Key *Key
	// Reuse keeps the output buffer from one call to the next: an Object
	// then shares it and is valid only until the next call on this
	// encoder. For a worker that encodes and sends one object at a time,
	// and drops the encoder when a send failed (the request may still be
	// reading the body); see EncoderList.
	Reuse bool
	level zstd.EncoderLevel
	zw    *zstd.Encoder
	chunk []byte
	out   []byte // kept output buffer (Reuse)
}

// buffer returns an output buffer of length hsize and at least capacity
// need: the kept one (Reuse) when large enough, else a new one.
func (e *Encoder) buffer(hsize, need int) []byte {
	var dst []byte
	if e.Reuse {
		dst = e.out
	}
	if cap(dst) < need {
		dst = make([]byte, 0, need)
	}
	return dst[:hsize]
}

// UseBuffer gives the encoder a buffer to build envelopes in (memory the
// caller prepared, huge pages for instance), and sets Reuse.
func (e *Encoder) UseBuffer(b []byte) {
	e.Reuse = true
	e.out = b[:0]
}

// keep remembers buf as the output buffer for the next call (Reuse).
func (e *Encoder) keep(buf []byte) {
	if e.Reuse {
		e.out = buf[:0]
	}
}

// Level is a compression level.
type Level int

const (
	// Fast is what pushes use: zstd's fastest level without the entropy
	// stage, so that archive_command keeps well ahead of PostgreSQL.
	Fast Level = iota
	// Small is what the storage host recompresses to in its idle time.
	Small
)

// NewEncoder returns an encoder at the Fast level: zstd at its fastest,
// frames without their own checksum (the envelope's SHA-256 covers
// integrity) and literals without entropy coding.
func NewEncoder() *Encoder { return NewEncoderLevel(Fast) }

// NewEncoderLevel returns an encoder at level.
func NewEncoderLevel(l Level) *Encoder {
	// A 1 MiB window: WAL finds hardly any match farther back (on 41
	// real segments the ratio is the same as with 4 MiB at both levels:
	// 0.5005 at Fast, 0.3153 at Small), and the encoder's history (twice
	// the window) and every decoder's are four times smaller. In a
	// process that encodes or decodes one segment and exits, those are
	// fresh pages, and a page fault costs more than the bytes it maps are
	// worth to the compressor.
	opts := []zstd.EOption{
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false),
		zstd.WithWindowSize(1 << 20),
	}
	switch l {
	case Small:
		opts = append(opts, zstd.WithEncoderLevel(zstd.SpeedDefault))
	default:
		opts = append(opts, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithNoEntropyCompression(true))
	}
	zw, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		panic(err) // only on invalid options, which are constant here
	}
	return &Encoder{Compression: Zstd, zw: zw, chunk: make([]byte, 256<<10)}
}

// Encode reads r to EOF (at most MaxRawSize bytes) and returns the
// envelope bound to name. The raw bytes are read once: each chunk is
// hashed and compressed in the same pass, so that memory holds the output
// and one chunk, not the input too (in a process that encodes one file
// and exits, every fresh page costs a fault). sizeHint (the expected raw
// size, or 0) sizes the buffer.
func (e *Encoder) Encode(r io.Reader, sizeHint int64, name string) (*Object, error) {
	if len(name) > MaxNameLen {
		return nil, fmt.Errorf("%w: object name of %d bytes", errkind.ErrInvalid, len(name))
	}
	hsize := FixedSize + len(name)
	// Room for incompressible data, so the buffer is allocated once.
	capHint := int64(hsize) + sizeHint + 64<<10
	if sizeHint <= 0 || sizeHint > MaxRawSize {
		capHint = int64(hsize) + 1<<20
	}
	out := bytes.NewBuffer(e.buffer(hsize, int(capHint)))
	h := sha256.New()
	var raw int64
	var w io.Writer = out
	if e.Compression == Zstd {
		e.zw.Reset(out)
		w = e.zw
	}
	for {
		n, err := r.Read(e.chunk)
		if n > 0 {
			raw += int64(n)
			if raw > MaxRawSize {
				return nil, fmt.Errorf("%w: more than %d bytes", errkind.ErrInvalid, int64(MaxRawSize))
			}
			h.Write(e.chunk[:n])
			if _, werr := w.Write(e.chunk[:n]); werr != nil {
				return nil, werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if e.Compression == Zstd {
		if err := e.zw.Close(); err != nil {
			return nil, err
		}
	}
	hdr := Header{
		Version:     Version,
		Compression: e.Compression,
		RawSize:     raw,
		SystemID:    e.SystemID,
		Name:        name,
	}
	h.Sum(hdr.Digest[:0])
	return e.seal(hdr, out.Bytes(), hsize)
}

// EncodeBytes is Encode for data already in memory: the raw bytes are
// hashed where they lie and compressed in one call (zstd's EncodeAll),
// which spares the streaming encoder's copies into its block buffers.
func (e *Encoder) EncodeBytes(b []byte, name string) (*Object, error) {
	return e.EncodeBytesSum(b, sha256.Sum256(b), name)
}

// EncodeBytesSum is EncodeBytes for a caller that already holds the
// SHA-256 of b (a pack is named by it): b is not hashed again. A wrong sum
// makes an object that every reader, walstored's door first, refuses.
func (e *Encoder) EncodeBytesSum(b []byte, sum Digest, name string) (*Object, error) {
	if len(name) > MaxNameLen {
		return nil, fmt.Errorf("%w: object name of %d bytes", errkind.ErrInvalid, len(name))
	}
	if int64(len(b)) > MaxRawSize {
		return nil, fmt.Errorf("%w: more than %d bytes", errkind.ErrInvalid, int64(MaxRawSize))
	}
	hsize := FixedSize + len(name)
	hdr := Header{
		Version:     Version,
		Compression: e.Compression,
		RawSize:     int64(len(b)),
		SystemID:    e.SystemID,
		Name:        name,
		Digest:      sum,
	}
	buf := e.buffer(hsize, hsize+len(b)+len(b)/128+64<<10)
	switch e.Compression {
	case Zstd:
		buf = e.zw.EncodeAll(b, buf)
	default:
		buf = append(buf, b...)
	}
	return e.seal(hdr, buf, hsize)
}

// seal finishes an envelope whose payload follows hsize bytes of room
// for the header in buf: encryption, sizes, payload digest, header.
func (e *Encoder) seal(hdr Header, buf []byte, hsize int) (*Object, error) {
	if e.Key != nil {
		sealed, err := seal(e.Key, buf[hsize:], hdr.Name)
		if err != nil {
			return nil, err
		}
		buf = append(buf[:hsize:hsize], sealed...)
		hdr.Flags |= FlagEncrypted
	}
	hdr.PayloadSize = int64(len(buf) - hsize)
	hdr.PayloadDigest = sha256.Sum256(buf[hsize:])
	copy(buf, hdr.Marshal())
	e.keep(buf)
	return &Object{Header: hdr, buf: buf}, nil
}

// NewObject wraps an already encoded envelope (for example one read back
// from a store) after checking its header and length.
func NewObject(buf []byte) (*Object, error) {
	hdr, err := ParseHeader(buf)
	if err != nil {
		return nil, err
	}
	if hdr.ObjectSize() != int64(len(buf)) {
		return nil, fmt.Errorf("%w: object is %d bytes, header says %d", errkind.ErrCorrupt, len(buf), hdr.ObjectSize())
	}
	return &Object{Header: hdr, buf: buf}, nil
}

// decoders keeps zstd decoders, with their history buffers, for reuse
// (a bounded list rather than a sync.Pool, which every garbage collection
// empties: a long-lived prefetcher would make a new one, and fault in its
// buffers, for nearly every segment). Each is limited so that a crafted
// payload cannot make it allocate more than one object's worth of memory.
var decoders = make(chan *zstd.Decoder, 8)

func getDecoder() *zstd.Decoder {
	select {
	case d := <-decoders:
		return d
	default:
	}
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(MaxRawSize+1),
		zstd.WithDecoderMaxWindow(64<<20),
	)
	if err != nil {
		panic(err) // only on invalid options, which are constant here
	}
	return d
}

func putDecoder(d *zstd.Decoder) {
	d.Reset(nil)
	select {
	case decoders <- d:
	default:
	}
}

// Open reads the envelope header from r, checks that it is bound to name
// ("" skips that check: tests, fuzzing), and returns a reader of the raw
// bytes. The reader checks everything the header promises: it fails with
// ErrCorrupt as soon as the output runs longer than the raw size, and at
// the end if it is shorter, if the SHA-256 differs, or if bytes follow the
// payload. Callers must treat data as untrusted until Read returns io.EOF.
// An encrypted object needs a key of kr (else ErrKey).
func Open(r io.Reader, name string, kr *Keyring) (Header, io.ReadCloser, error) {
	return open(r, name, kr, true)
}

// OpenUnhashed is Open for a reader that checks every byte it uses
// against hashes of its own (a restore checks each block of a pack against
// the block's SHA-256 before writing it): the header, the name, the
// sizes and the decoding are checked as by Open, but the content's SHA-256
// is not computed, which spares one hash of every byte. Bytes the caller
// does not check go unverified.
func OpenUnhashed(r io.Reader, name string, kr *Keyring) (Header, io.ReadCloser, error) {
	return open(r, name, kr, false)
}

func open(r io.Reader, name string, kr *Keyring, hashed bool) (Header, io.ReadCloser, error) {
	hdr, err := ReadHeader(r)
	if err != nil {
		return hdr, nil, err
	}
	if name != "" {
		if err := hdr.CheckName(name); err != nil {
			return hdr, nil, err
		}
	}
	rc, err := openPayload(hdr, r, kr, hashed)
	return hdr, rc, err
}

// OpenPayload returns the verified raw stream of the payload that follows
// hdr in r.
func OpenPayload(hdr Header, r io.Reader, kr *Keyring) (io.ReadCloser, error) {
	return openPayload(hdr, r, kr, true)
}

// openPayload is OpenPayload; hashed=false skips the content's SHA-256
// (OpenUnhashed).
func openPayload(hdr Header, r io.Reader, kr *Keyring, hashed bool) (io.ReadCloser, error) {
	body := &exactReader{r: r, left: hdr.PayloadSize}
	var src io.Reader = body
	if hdr.Encrypted() {
		if !kr.hasKeys() {
			return nil, fmt.Errorf("%w: the object is encrypted and no key was given (--encryption-key-file)", errkind.ErrKey)
		}
		var err error
		if src, err = openEncrypted(hdr, body, kr); err != nil {
			return nil, err
		}
	}
	v := &verifier{hdr: hdr, body: body}
	if hashed {
		v.h = sha256.New()
	}
	switch hdr.Compression {
	case NoCompression:
		v.src = src
	case Zstd:
		d := getDecoder()
		if err := d.Reset(src); err != nil {
			putDecoder(d)
			return nil, fmt.Errorf("%w: %v", errkind.ErrCorrupt, err)
		}
		v.src, v.dec = d, d
	}
	return v, nil
}

// exactReader yields exactly left bytes of r and then checks that r is at
// its end: a truncated or over-long object is corrupt, not merely short.
type exactReader struct {
	r    io.Reader
	left int64
	err  error
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if e.left == 0 {
		var one [1]byte
		n, err := io.ReadFull(e.r, one[:])
		switch {
		case n > 0:
			e.err = fmt.Errorf("%w: data after the end of the payload", errkind.ErrCorrupt)
		case errors.Is(err, io.EOF):
			e.err = io.EOF
		default:
			e.err = &sourceError{err}
		}
		return 0, e.err
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if errors.Is(err, io.EOF) && e.left > 0 {
		e.err = fmt.Errorf("%w: payload truncated (%d bytes missing)", errkind.ErrCorrupt, e.left)
		return n, e.err
	}
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = &sourceError{err}
		return n, e.err
	}
	return n, nil
}

// asCorrupt classifies a read error: a failure of the source passes
// through (the object may be fine), anything else is corruption.
func asCorrupt(err error) error {
	var src *sourceError
	switch {
	case errors.As(err, &src):
		return src.err
	case errors.Is(err, errkind.ErrCorrupt):
		return err
	}
	return fmt.Errorf("%w: %v", errkind.ErrCorrupt, err)
}

// sourceError marks a failure of the reader under the envelope (network,
// disk): the object may be fine, so it is not reported as corrupt.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

type verifier struct {
	hdr  Header
	body *exactReader
	src  io.Reader
	dec  *zstd.Decoder
	h    hash.Hash // nil: the content is not hashed (OpenUnhashed)
	n    int64
	err  error
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.src.Read(p)
	if n > 0 {
		v.n += int64(n)
		if v.n > v.hdr.RawSize {
			v.err = fmt.Errorf("%w: payload expands beyond the %d bytes its header promises", errkind.ErrCorrupt, v.hdr.RawSize)
			return 0, v.err
		}
		if v.h != nil {
			v.h.Write(p[:n])
		}
	}
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF):
		v.err = v.finish()
		if v.err != io.EOF {
			return 0, v.err
		}
		return n, io.EOF
	default:
		v.err = asCorrupt(err)
		return 0, v.err
	}
}

// finish runs once the decompressed stream ended.
func (v *verifier) finish() error {
	if v.n != v.hdr.RawSize {
		return fmt.Errorf("%w: payload gave %d bytes, header says %d", errkind.ErrCorrupt, v.n, v.hdr.RawSize)
	}
	// Drain the payload: the decoder may stop at the end of the last frame
	// before the payload ends, and whatever follows must not go unnoticed.
	if v.dec != nil {
		if n, err := io.Copy(io.Discard, v.body); err != nil {
			return asCorrupt(err)
		} else if n > 0 {
			return fmt.Errorf("%w: %d stray bytes after the compressed data", errkind.ErrCorrupt, n)
		}
	} else if _, err := v.body.Read(nil); err != io.EOF {
		return asCorrupt(err)
	}
	if v.h == nil {
		return io.EOF
	}
	var sum Digest
	v.h.Sum(sum[:0])
	if sum != v.hdr.Digest {
		return fmt.Errorf("%w: SHA-256 of the content is %s, header says %s", errkind.ErrCorrupt, sum, v.hdr.Digest)
	}
	return io.EOF
}

func (v *verifier) Close() error {
	if v.dec != nil {
		putDecoder(v.dec)
		v.dec = nil
	}
	if v.err == nil {
		v.err = errors.New("envelope reader closed")
	}
	return nil
}

// Verify reads a whole object from r and checks it with what is at hand:
// the header, the binding to name, the length, and either the SHA-256 of
// the raw content (plain objects, fully decoded; encrypted ones with a key
// of kr) or the payload checksum (encrypted ones without a key). It is
// what walstored runs on every body at its door and what verify runs on
// every stored object.
func Verify(r io.Reader, name string, kr *Keyring) (Header, error) {
	hdr, err := ReadHeader(r)
	if err != nil {
		return hdr, err
	}
	if name != "" {
		if err := hdr.CheckName(name); err != nil {
			return hdr, err
		}
	}
	return hdr, VerifyPayload(hdr, r, kr)
}

// VerifyPayload checks the payload that follows hdr in r (see Verify).
// In version 2 the payload checksum is checked too, so that a header that
// lies about its payload is refused even when the content decodes.
func VerifyPayload(hdr Header, r io.Reader, kr *Keyring) error {
	return VerifyPayloadTo(hdr, r, kr, nil)
}

// VerifyPayloadTo is VerifyPayload that also writes the raw content to w
// as it is decoded, when w is not nil and the content can be read (not
// encrypted without a key). w's errors are ignored.
func VerifyPayloadTo(hdr Header, r io.Reader, kr *Keyring, w io.Writer) error {
	if hdr.Encrypted() && !kr.hasKeys() {
		return checkCiphertext(hdr, &exactReader{r: r, left: hdr.PayloadSize})
	}
	var ph hash.Hash
	if hdr.Version >= 2 {
		ph = sha256.New()
		r = io.TeeReader(r, ph)
	}
	rc, err := OpenPayload(hdr, r, kr)
	if err != nil {
		return err
	}
	defer rc.Close()
	var sink io.Writer = io.Discard
	if w != nil {
		sink = ignoreErrors{w}
	}
	if _, err := io.Copy(sink, rc); err != nil {
		return err
	}
	if ph != nil {
		var got Digest
		ph.Sum(got[:0])
		if got != hdr.PayloadDigest {
			return fmt.Errorf("%w: the payload does not match the checksum in its header", errkind.ErrCorrupt)
		}
	}
	return nil
}

// checkCiphertext proves an encrypted payload is the one the client
// wrote, without the key: its SHA-256 (from the header in version 2, from
// the payload's first 32 bytes in version 1).
func checkCiphertext(hdr Header, body io.Reader) error {
	want := hdr.PayloadDigest
	if hdr.Version == 1 {
		if _, err := io.ReadFull(body, want[:]); err != nil {
			return asCorrupt(fmt.Errorf("%w: encrypted payload too short", errkind.ErrCorrupt))
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, body); err != nil {
		return asCorrupt(err)
	}
	var got Digest
	h.Sum(got[:0])
	if got != want {
		return fmt.Errorf("%w: encrypted payload does not match its checksum", errkind.ErrCorrupt)
	}
	return nil
}

// ignoreErrors passes writes on and never fails (a checker keeps its own
// verdict).
type ignoreErrors struct{ w io.Writer }

func (i ignoreErrors) Write(p []byte) (int, error) {
	i.w.Write(p)
	return len(p), nil
}
