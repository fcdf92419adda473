package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/walstore/walstore/base/errkind"
)

// Encrypted payloads (header flag FlagEncrypted), version 2:
//
//	0   4   "WSE2"
//	4   8   key id: first 8 bytes of SHA-256("walstore key id" || key)
//	12  8   random nonce prefix
//	20  ... chunks: 4-byte length, then AES-256-GCM of up to 1 MiB of the
//	        compressed stream; nonce = prefix || chunk number; the
//	        additional data binds the chunk number, "last chunk", the key
//	        id and the object's name, so chunks cannot be dropped,
//	        reordered, or moved to another object or another name
//
// The payload's SHA-256 is in the envelope header, where walstored and
// verify check it without the key. Version 1 payloads (read, never
// written) begin with that checksum instead, then "WSE1", and their
// additional data does not hold the name.
//
// The header's digest stays the SHA-256 of the raw (plaintext) bytes, so
// walstored can still tell "already archived" from a conflict without the
// key. That digest reveals whether an object equals a guessed plaintext;
// nothing else about the content leaves the client unencrypted.
const (
	cryptMagicV1   = "WSE1"
	cryptMagicV2   = "WSE2"
	cryptPrefixV1  = 32 + 4 + 8 + 8
	cryptPrefixV2  = 4 + 8 + 8
	cryptChunk     = 1 << 20
	gcmOverhead    = 16
	maxCipherChunk = cryptChunk + gcmOverhead
)

// Key is an archive encryption key.
type Key struct {
	id   [8]byte
	aead cipher.AEAD
}

// ID names the key (hex), as recorded in every object it encrypted.
func (k *Key) ID() string { return hex.EncodeToString(k.id[:]) }

func newKey(raw []byte) (*Key, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("%w: an encryption key is 32 bytes, got %d", errkind.ErrInvalid, len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &Key{aead: aead}
	h := sha256.Sum256(append([]byte("walstore key id"), raw...))
	copy(k.id[:], h[:8])
	return k, nil
}

// ParseKey reads a key file's contents: 32 bytes as 64 hex digits or as
// base64 (what "walstored key" prints), surrounding space ignored.
func ParseKey(text []byte) (*Key, error) {
	s := strings.TrimSpace(string(text))
	if raw, err := hex.DecodeString(s); err == nil && len(raw) == 32 {
		return newKey(raw)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil && len(raw) == 32 {
			return newKey(raw)
		}
	}
	return nil, fmt.Errorf("%w: a key file holds 32 bytes as 64 hex digits or base64 (walstored key makes one)", errkind.ErrInvalid)
}

// PassphraseIterations is the PBKDF2-SHA256 work factor for passphrases
// (about 60 ms here, paid by every walpush and walfetch call: prefer key
// files at high WAL rates).
const PassphraseIterations = 200_000

// KeyFromPassphrase derives an archive's key from a passphrase; the salt
// is the archive name, so one passphrase gives each archive its own key.
func KeyFromPassphrase(passphrase []byte, archiveName string) (*Key, error) {
	p := bytes.TrimSpace(passphrase)
	if len(p) < 12 {
		return nil, fmt.Errorf("%w: a passphrase must be at least 12 characters", errkind.ErrInvalid)
	}
	raw, err := pbkdf2.Key(sha256.New, string(p), []byte("walstore archive "+archiveName), PassphraseIterations, 32)
	if err != nil {
		return nil, err
	}
	return newKey(raw)
}

// NewKeyText makes a random key in the form key files hold.
func NewKeyText() (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(raw[:]), nil
}

// Keyring is what a client encrypts with and decrypts with: the current
// key, and older ones still needed to read what they encrypted (rotation).
type Keyring struct {
	Encrypt *Key
	Decrypt []*Key
}

func (kr *Keyring) hasKeys() bool {
	return kr != nil && (kr.Encrypt != nil || len(kr.Decrypt) > 0)
}

func (kr *Keyring) find(id []byte) *Key {
	if kr == nil {
		return nil
	}
	for _, k := range append([]*Key{kr.Encrypt}, kr.Decrypt...) {
		if k != nil && bytes.Equal(k.id[:], id) {
			return k
		}
	}
	return nil
}

func (kr *Keyring) ids() string {
	var s []string
	if kr != nil {
		for _, k := range append([]*Key{kr.Encrypt}, kr.Decrypt...) {
			if k != nil {
				s = append(s, k.ID())
			}
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// seal encrypts a compressed stream into a version 2 encrypted payload
// bound to name.
func seal(k *Key, compressed []byte, name string) ([]byte, error) {
	var prefix [8]byte
	if _, err := rand.Read(prefix[:]); err != nil {
		return nil, err
	}
	n := (len(compressed) + cryptChunk - 1) / cryptChunk
	if n == 0 {
		n = 1
	}
	out := make([]byte, cryptPrefixV2, cryptPrefixV2+len(compressed)+n*(4+gcmOverhead))
	copy(out[0:], cryptMagicV2)
	copy(out[4:], k.id[:])
	copy(out[12:], prefix[:])
	for i := 0; i < n; i++ {
		chunk := compressed[min(i*cryptChunk, len(compressed)):min((i+1)*cryptChunk, len(compressed))]
		nonce, aad := chunkNonce(prefix, i), chunkAAD(k, i, i == n-1, name)
		var lenb [4]byte
		binary.LittleEndian.PutUint32(lenb[:], uint32(len(chunk)+gcmOverhead))
		out = append(out, lenb[:]...)
		out = k.aead.Seal(out, nonce, chunk, aad)
	}
	return out, nil
}

func chunkNonce(prefix [8]byte, i int) []byte {
	nonce := make([]byte, 12)
	copy(nonce, prefix[:])
	binary.BigEndian.PutUint32(nonce[8:], uint32(i))
	return nonce
}

// chunkAAD is the additional data of chunk i; name is "" in version 1.
func chunkAAD(k *Key, i int, last bool, name string) []byte {
	aad := make([]byte, 13, 13+len(name))
	binary.BigEndian.PutUint32(aad, uint32(i))
	if last {
		aad[4] = 1
	}
	copy(aad[5:], k.id[:])
	return append(aad, name...)
}

// opener decrypts an encrypted payload as it is read, yielding the
// compressed stream.
type opener struct {
	r      io.Reader
	key    *Key
	name   string // bound into each chunk (version 2)
	prefix [8]byte
	i      int
	buf    []byte // decrypted, not yet returned
	done   bool
	err    error
	// Version 1 only: the in-payload checksum and its running hash.
	sum  *[32]byte
	hash interface {
		io.Writer
		Sum([]byte) []byte
	}
}

// openEncrypted reads the crypt prefix of hdr's payload and returns a
// reader of the compressed stream, or ErrKey if no key of kr fits.
func openEncrypted(hdr Header, r io.Reader, kr *Keyring) (io.Reader, error) {
	o := &opener{r: r, name: hdr.Name}
	var id []byte
	if hdr.Version == 1 {
		var pre [cryptPrefixV1]byte
		if _, err := io.ReadFull(r, pre[:]); err != nil {
			return nil, fmt.Errorf("%w: encrypted payload too short", errkind.ErrCorrupt)
		}
		if string(pre[32:36]) != cryptMagicV1 {
			return nil, fmt.Errorf("%w: encrypted payload has no %s marker", errkind.ErrCorrupt, cryptMagicV1)
		}
		id = pre[36:44]
		copy(o.prefix[:], pre[44:52])
		o.sum = new([32]byte)
		copy(o.sum[:], pre[:32])
		o.hash = sha256.New()
		o.hash.Write(pre[32:])
	} else {
		var pre [cryptPrefixV2]byte
		if _, err := io.ReadFull(r, pre[:]); err != nil {
			return nil, fmt.Errorf("%w: encrypted payload too short", errkind.ErrCorrupt)
		}
		if string(pre[0:4]) != cryptMagicV2 {
			return nil, fmt.Errorf("%w: encrypted payload has no %s marker", errkind.ErrCorrupt, cryptMagicV2)
		}
		id = bytes.Clone(pre[4:12])
		copy(o.prefix[:], pre[12:20])
	}
	k := kr.find(id)
	if k == nil {
		return nil, fmt.Errorf("%w: the object is encrypted with key %s; the keys given are: %s", errkind.ErrKey, hex.EncodeToString(id), kr.ids())
	}
	o.key = k
	return o, nil
}

func (o *opener) Read(p []byte) (int, error) {
	for len(o.buf) == 0 {
		if o.err != nil {
			return 0, o.err
		}
		if o.done {
			o.err = io.EOF
			if o.sum != nil && !bytes.Equal(o.hash.Sum(nil), o.sum[:]) {
				o.err = fmt.Errorf("%w: encrypted payload does not match its checksum", errkind.ErrCorrupt)
			}
			continue
		}
		o.err = o.next()
	}
	n := copy(p, o.buf)
	o.buf = o.buf[n:]
	return n, nil
}

// next decrypts one chunk. The last chunk is the one whose length field
// is followed by the end of the payload.
func (o *opener) next() error {
	var lenb [4]byte
	if _, err := io.ReadFull(o.r, lenb[:]); err != nil {
		return asCorrupt(fmt.Errorf("%w: encrypted payload truncated (%v)", errkind.ErrCorrupt, err))
	}
	n := binary.LittleEndian.Uint32(lenb[:])
	if n < gcmOverhead || n > maxCipherChunk {
		return fmt.Errorf("%w: encrypted chunk of %d bytes", errkind.ErrCorrupt, n)
	}
	ct := make([]byte, n)
	if _, err := io.ReadFull(o.r, ct); err != nil {
		return asCorrupt(fmt.Errorf("%w: encrypted chunk truncated (%v)", errkind.ErrCorrupt, err))
	}
	if o.hash != nil {
		o.hash.Write(lenb[:])
		o.hash.Write(ct)
	}
	// Is there more? Peek one byte through the exact reader.
	var one [1]byte
	m, err := o.r.Read(one[:])
	last := m == 0 && errors.Is(err, io.EOF)
	if err != nil && !errors.Is(err, io.EOF) {
		return asCorrupt(err)
	}
	pt, oerr := o.key.aead.Open(nil, chunkNonce(o.prefix, o.i), ct, chunkAAD(o.key, o.i, last, o.name))
	if oerr != nil {
		return fmt.Errorf("%w: encrypted chunk %d fails authentication (tampered, truncated, or another object's)", errkind.ErrCorrupt, o.i)
	}
	o.i++
	o.buf = pt
	if last {
		o.done = true
	} else {
		o.r = io.MultiReader(bytes.NewReader(one[:m]), o.r)
	}
	return nil
}
