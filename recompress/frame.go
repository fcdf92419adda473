package recompress

import "encoding/binary"

// fastEncoded reports whether a zstd payload (or its beginning) looks
// written at envelope.Fast: the compressed blocks in p, at least one, do
// not entropy-code their literals (Fast turns that stage off; zstd's
// default level uses it wherever it pays). This is how a pass skips what
// an earlier pass already recompressed, from the first blocks alone. It
// reads only the frame and block headers (RFC 8878, 3.1.1); anything it
// cannot parse is not called fast, so a damaged payload is left to
// verify.
func fastEncoded(p []byte) bool {
	fast, _ := literalsCoding(p)
	return fast
}

// literalsCoding is fastEncoded, and whether p decided it: a compressed
// block was in it, or the frame ended. A beginning of incompressible data
// (raw blocks only) decides nothing.
func literalsCoding(p []byte) (fast, decided bool) {
	const magic = 0xFD2FB528
	if len(p) < 6 || binary.LittleEndian.Uint32(p) != magic {
		return false, true
	}
	fhd := p[4]
	pos := 5
	single := fhd&0x20 != 0
	if !single {
		pos++ // window descriptor
	}
	pos += [4]int{0, 1, 2, 4}[fhd&0x03] // dictionary id
	fcs := [4]int{0, 2, 4, 8}[fhd>>6]
	if fcs == 0 && single {
		fcs = 1
	}
	pos += fcs
	compressed := 0
	for pos+3 <= len(p) {
		bh := uint32(p[pos]) | uint32(p[pos+1])<<8 | uint32(p[pos+2])<<16
		pos += 3
		last, typ, size := bh&1 != 0, (bh>>1)&3, int(bh>>3)
		switch typ {
		case 0: // raw
			pos += size
		case 1: // RLE: one byte
			pos++
		case 2: // compressed: the literals section comes first
			if pos >= len(p) {
				return compressed > 0, compressed > 0
			}
			if lit := p[pos] & 3; lit == 2 || lit == 3 {
				return false, true // Huffman-coded literals: not Fast
			}
			compressed++
			pos += size
		default:
			return false, true
		}
		if last {
			return compressed > 0, true
		}
	}
	return compressed > 0, compressed > 0 // p ended: judged by the blocks it holds
}
