// Package wire is walstored's HTTP protocol: the paths, headers, error
// codes and listing format that walstored's server (package server) and its
// client (store/httpstore) share. Neither side imports the other.
package wire

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/walstore/walstore/base/errkind"
)

// The walstored HTTP protocol:
//
//	PUT    /v1/archives/{archive}/objects/{path}   store an envelope (Content-Length required)
//	GET    /v1/archives/{archive}/objects/{path}   read it
//	HEAD   /v1/archives/{archive}/objects/{path}   size and mtime
//	DELETE /v1/archives/{archive}/objects/{path}   remove it (admin)
//	GET    /v1/list?prefix=P                       newline-delimited JSON ListEntry
//	                                               lines, the last one {"end":true}
//
// A store key "main/wal/000000010000000000000001" is the archive "main"
// and the path "wal/000000010000000000000001". Errors are a JSON ErrorBody
// whose code maps back to archive's sentinel errors.
const (
	// HeaderDigest carries the SHA-256 of an object's raw bytes.
	HeaderDigest = "Walstore-Sha256"
	// HeaderOutcome says what a PUT did: "stored", or OutcomeRepaired.
	HeaderOutcome = "Walstore-Outcome"
	// HeaderWait asks a GET to wait this long (a Go duration) for an
	// object that is not stored yet (see walfetch --wait).
	HeaderWait = "Walstore-Wait"
	// HeaderMtime carries an object's modification time in nanoseconds.
	HeaderMtime = "Walstore-Mtime"
	// OutcomeRepaired: the PUT replaced a stored copy of the same content
	// that failed verification.
	OutcomeRepaired = "repaired"
	// HeaderPartial = AcceptPartial on a GET of a segment: the segment
	// walstored's WAL receiver is still receiving may be served,
	// zero-padded (walfetch in archive recovery: the end of the archive
	// is what the receiver flushed).
	HeaderPartial = "Walstore-Partial"
	AcceptPartial = "accept"
)

// The routes: the paths walstored serves and its clients ask for,
// spelt here only.
const (
	PathObjects = "/v1/archives/{archive}/objects/{path...}" // a store key: ObjectPath
	PathList    = "/v1/list"                                 // ?prefix=: ListPath
	PathStatus  = "/v1/status"
	PathNotify  = "/v1/notify"
	PathStores  = "/v1/stores"
	PathMetrics = "/metrics"
	PathHealth  = "/healthz"
)

// ObjectPath is the URL path of a store key (PathObjects).
func ObjectPath(key string) string {
	a, rest, _ := strings.Cut(key, "/")
	return "/v1/archives/" + a + "/objects/" + rest
}

// ListPath is the URL path and query of a listing.
func ListPath(prefix string) string { return PathList + "?prefix=" + url.QueryEscape(prefix) }

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Code   string `json:"code"`
	Error  string `json:"error"`
	Stored string `json:"stored_sha256,omitempty"` // with code "exists"
}

// ListEntry is one line of a listing.
type ListEntry struct {
	Key   string    `json:"key,omitempty"`
	Size  int64     `json:"size,omitempty"`
	MTime time.Time `json:"mtime,omitzero"`
	End   bool      `json:"end,omitempty"`
	Count int       `json:"count,omitempty"`
	Code  string    `json:"code,omitempty"`
	Error string    `json:"error,omitempty"`
}

var codes = []struct {
	code   string
	status int
	err    error
	// refined: a code that only a JSON body can carry; a bare status
	// (no body) never maps to it.
	refined bool
}{
	// Before not_found, which it is a kind of: a WAL file older than the
	// archive's oldest (retention removed it).
	{"expired", http.StatusNotFound, errkind.ErrExpired, true},
	{"not_found", http.StatusNotFound, errkind.ErrNotFound, false},
	{"exists", http.StatusConflict, errkind.ErrExists, false},
	{"conflict", http.StatusConflict, errkind.ErrConflict, false},
	{"wrong_system", http.StatusConflict, errkind.ErrWrongSystem, false},
	{"invalid", http.StatusBadRequest, errkind.ErrInvalid, false},
	{"unauthorized", http.StatusUnauthorized, errkind.ErrUnauthorized, false},
	{"forbidden", http.StatusForbidden, errkind.ErrForbidden, false},
	{"no_space", http.StatusInsufficientStorage, errkind.ErrNoSpace, false},
	{"corrupt", http.StatusBadGateway, errkind.ErrCorrupt, false},
	// A body that fails verification at the door: damaged on the way (a
	// retry may get through) or by the client. Never stored.
	{"damaged", http.StatusUnprocessableEntity, errkind.ErrCorrupt, false},
	{"key", http.StatusBadRequest, errkind.ErrKey, false},
	// The store behind walstored refuses writes: worth retrying, but
	// said as what it is, not as "unavailable".
	{"read_only", http.StatusServiceUnavailable, errkind.ErrReadOnly, true},
}

// CodeUnavailable is the code of every error not in the table: the store
// behind the server failed; worth retrying.
const CodeUnavailable = "unavailable"

// Classify returns the status and code for an error. (A damaged request
// body is answered with code "damaged" by the server, explicitly.)
func Classify(err error) (status int, code string) {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.status, c.code
		}
	}
	return http.StatusServiceUnavailable, CodeUnavailable
}

// RemoteError is an error reported by walstored. It wraps the sentinel its
// code stands for, so errors.Is works across the wire.
type RemoteError struct {
	Status int
	Code   string
	Msg    string
	Stored string // digest of the stored object, with code "exists"
}

func (e *RemoteError) Error() string {
	if e.Msg == "" {
		return http.StatusText(e.Status)
	}
	return e.Msg
}

func (e *RemoteError) Unwrap() error {
	for _, c := range codes {
		if c.code == e.Code {
			return c.err
		}
	}
	return nil
}

// StatusError builds a RemoteError for a response without a JSON body.
func StatusError(status int, msg string) *RemoteError {
	msg = strings.TrimSpace(msg)
	for _, c := range codes {
		if c.status == status && !c.refined {
			return &RemoteError{Status: status, Code: c.code, Msg: msg}
		}
	}
	if status == http.StatusRequestEntityTooLarge || status == http.StatusLengthRequired {
		return &RemoteError{Status: status, Code: "invalid", Msg: msg}
	}
	return &RemoteError{Status: status, Code: CodeUnavailable, Msg: msg}
}
