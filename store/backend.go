package store

import "context"

// Backend is one kind of store as the registry (store/storeurl) knows
// it: the URL schemes it answers, how it checks a URL without connecting,
// how it opens one, and what walstored init must make first. Each backend
// package exports one (filestore.Backend, s3store.Backend, ...); a new
// store is a new package and one line in storeurl's table.
type Backend struct {
	// Name is what messages call it ("a directory", "S3 or MinIO").
	Name    string
	Schemes []string
	// Example is a URL of this kind, for messages.
	Example string
	// Served: a walstored, which clients reach and walstored never fronts
	// (walstored serves the other kinds).
	Served bool
	// Volatile: nothing outlives the process (the memory store). The
	// commands refuse it: a push there would report success and lose
	// the WAL.
	Volatile bool
	// Check parses rawURL without connecting to anything.
	Check func(rawURL string) error
	// Open returns the store rawURL names, with what the client brings.
	Open func(ctx context.Context, rawURL string, a Access) (Store, error)
	// Create makes what must exist before a repository can be made at
	// rawURL (walstored init, serve's default store); nil if nothing.
	Create func(ctx context.Context, rawURL string) error
}

// Access is what a client brings to a store beyond its URL. Each backend
// takes its part: the walstored client its token and TLS files, S3 its
// credentials (from Getenv), the file store ReadOnly.
type Access struct {
	// Getenv reads the environment (S3's AWS_* credentials); nil reads
	// nothing.
	Getenv func(string) string
	// Token and the TLS files, for a walstored.
	Token                         string
	CACert, ClientCert, ClientKey string
	// ReadOnly: the client never writes (walfetch, list, verify): no
	// write probe, no conditional-write check.
	ReadOnly bool
	// NoCache asks walstored to read past its cache (admin commands).
	NoCache bool
	// Known and Learned are facts about this repository a client
	// remembers between runs (S3: "conditional writes work"), so that
	// they are proven once, not at every start. Nil: nothing remembered.
	Known   func(fact string) bool
	Learned func(fact string)
	// For a list of walstored URLs: the one to try first (the one that
	// answered last time), and who to tell when another one answers.
	First    int
	OnSwitch func(i int)
}

// Env is a.Getenv(key), "" without one.
func (a Access) Env(key string) string {
	if a.Getenv == nil {
		return ""
	}
	return a.Getenv(key)
}

// IsKnown is a.Known(fact), false without one.
func (a Access) IsKnown(fact string) bool { return a.Known != nil && a.Known(fact) }

// Learn is a.Learned(fact), if set.
func (a Access) Learn(fact string) {
	if a.Learned != nil {
		a.Learned(fact)
	}
}
