package store

import "context"

// PutNote learns what a store behind a protocol did with a put beyond
// "stored": walstored answers a put whose name held a damaged copy of the
// same content by replacing that copy, and says so. A caller that wants
// to know attaches a note to the put's context (WithPutNote); wrappers
// pass contexts through, so the note reaches the remote store.
type PutNote struct {
	// Repaired: the put replaced a stored copy that failed verification.
	Repaired bool
}

type putNoteKey struct{}

// WithPutNote returns ctx carrying n.
func WithPutNote(ctx context.Context, n *PutNote) context.Context {
	return context.WithValue(ctx, putNoteKey{}, n)
}

// NotePut returns the note attached to ctx, or nil.
func NotePut(ctx context.Context) *PutNote {
	n, _ := ctx.Value(putNoteKey{}).(*PutNote)
	return n
}
