package envelope

// EncoderList keeps encoders for reuse, each with its zstd state and its
// output buffer (Reuse is set): made fresh for each object, an encoder
// and a buffer for a 16 MiB segment or a 32 MiB pack cost thousands of
// page faults, more CPU than compressing and hashing the bytes. The list
// is bounded, not a sync.Pool, which every garbage collection empties.
//
// An encoder is put back only once the object it encoded was consumed
// whole (a store took every byte of it). After a failed send it is
// dropped: a request answered early may still be reading its buffer.
type EncoderList struct {
	kept   chan *Encoder
	newOne func() *Encoder
}

// NewEncoderList keeps up to n encoders that newOne makes.
func NewEncoderList(n int, newOne func() *Encoder) *EncoderList {
	return &EncoderList{kept: make(chan *Encoder, n), newOne: newOne}
}

// Get returns a kept encoder, or a new one.
func (l *EncoderList) Get() *Encoder {
	select {
	case e := <-l.kept:
		return e
	default:
		e := l.newOne()
		e.Reuse = true
		return e
	}
}

// Put keeps e for the next object (or drops it when enough are kept).
func (l *EncoderList) Put(e *Encoder) {
	select {
	case l.kept <- e:
	default:
	}
}
