package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/wire"
	"github.com/walstore/walstore/server/door"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/wal"
)

// requestKey is the store key a request names, checked: a valid archive
// name and key (and, unless passthrough, a key of the layout).
func (s *Server) requestKey(r *http.Request) (string, archive.Key, error) {
	a, p := r.PathValue("archive"), r.PathValue("path")
	key := a + "/" + p
	if s.cfg.Passthrough {
		return key, archive.Key{}, store.ValidKey(key)
	}
	if err := archive.ValidArchiveName(a); err != nil {
		return "", archive.Key{}, err
	}
	k, err := archive.ParseKey(key)
	return key, k, err
}

// put decodes a PUT, hands it to the door (package door: the checks, in
// order, and the store) and encodes its answer.
func (s *Server) put(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("archive") + "/" + r.PathValue("path")
	note(r, "key", key)
	if r.ContentLength >= 0 {
		s.bodyDeadline(w, r.ContentLength)
	}
	body := &received{r: http.MaxBytesReader(w, r.Body, max(r.ContentLength, 0))}
	defer func() { note(r, "bytes_received", body.n) }()
	if s.cfg.Passthrough {
		if err := store.ValidKey(key); err != nil {
			s.fail(w, r, err)
			return
		}
		if err := door.CheckLength(key, r.ContentLength); err != nil {
			s.refuse(w, r, key, door.Result{}, err)
			return
		}
		s.putRaw(w, r, key, store.Stream(body, r.ContentLength))
		return
	}
	res, err := s.door.Put(r.Context(), key, r.ContentLength, body)
	if res.Header.Digest != (envelope.Digest{}) {
		note(r, "sha256", res.Header.Digest.Short())
	}
	if err != nil && s.refuse(w, r, key, res, err) {
		return
	}
	s.answerPut(w, r, key, res.K, res.Header, res.Outcome, err)
}

// refuse answers what the door refused before storing (and returns
// true); other errors (the store's, a conflict) are answerPut's.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, key string, res door.Result, err error) bool {
	var (
		ab  *door.Aborted
		dm  *door.Damaged
		bad *door.BadWAL
	)
	switch {
	case errors.Is(err, door.ErrNoLength):
		s.failStatus(w, r, http.StatusLengthRequired, "invalid", "Content-Length is required")
	case errors.Is(err, door.ErrTooLarge):
		s.failStatus(w, r, http.StatusRequestEntityTooLarge, "invalid", err.Error())
	case errors.Is(err, door.ErrBusy):
		w.Header().Set("Retry-After", "1")
		s.failStatus(w, r, http.StatusServiceUnavailable, "busy", err.Error())
	case errors.As(err, &ab):
		s.failStatus(w, r, http.StatusBadRequest, "aborted", fmt.Sprintf("%s: %v", key, err))
	case errors.As(err, &dm):
		s.metrics.damaged.Inc()
		s.failStatus(w, r, http.StatusUnprocessableEntity, "damaged", fmt.Sprintf("%s: %v", key, err))
	case errors.As(err, &bad):
		s.metrics.badWAL.WithLabelValues(res.K.Archive).Inc()
		s.fail(w, r, err)
	default:
		return false
	}
	return true
}

func (s *Server) answerPut(w http.ResponseWriter, r *http.Request, key string, k archive.Key, hdr envelope.Header, out archive.Outcome, err error) {
	var ce *archive.ConflictError
	switch {
	case err == nil && (out == archive.Stored || out == archive.Repaired):
		note(r, "outcome", out.String())
		if out == archive.Repaired {
			s.metrics.repaired.WithLabelValues(k.Archive).Inc()
			s.log.Warn("repaired a damaged copy with the same content pushed again", "key", key, "sha256", hdr.Digest.String())
		}
		if k.Kind == archive.KindWAL {
			s.metrics.pushed(k.Archive, k.WAL, hdr.RawSize)
		}
		if changesSummary(k) || k.Kind == archive.KindWAL && k.WAL.Kind == wal.History {
			s.scan.poke() // a promotion's history file changes the timelines at once
		}
		s.waiting.stored(key)
		if k.Kind == archive.KindWAL {
			s.notifyPeers(key, hdr.RawSize)
		}
		w.Header().Set(wire.HeaderOutcome, out.String())
		w.WriteHeader(http.StatusCreated)
	case err == nil && out == archive.AlreadyStored:
		note(r, "outcome", "identical")
		s.exists(w, r, key, hdr.Digest.String())
	case errors.As(err, &ce) && k.Kind == archive.KindWAL && k.WAL.Kind == wal.Backup:
		// Informational: the client keeps its label beside this one.
		note(r, "outcome", "conflict")
		s.metrics.backupConflicts.WithLabelValues(k.Archive).Inc()
		s.log.Warn("a .backup file was pushed under a name stored with other content; the client keeps it beside the first",
			"key", key, "stored_sha256", ce.Stored.String(), "new_sha256", ce.New.String(), "remote", r.RemoteAddr)
		s.exists(w, r, key, ce.Stored.String())
	case errors.As(err, &ce):
		note(r, "outcome", "conflict")
		s.metrics.conflicts.WithLabelValues(k.Archive).Inc()
		s.log.Error("refused to overwrite an object with different content (a demoted primary still archiving? see README: split brain)",
			"key", key, "stored_sha256", ce.Stored.String(), "new_sha256", ce.New.String(), "remote", r.RemoteAddr)
		s.exists(w, r, key, ce.Stored.String())
	default:
		s.fail(w, r, err)
	}
}

// putRaw stores bytes as they come (passthrough: transport tests).
func (s *Server) putRaw(w http.ResponseWriter, r *http.Request, key string, body store.Body) {
	err := s.cfg.Store.Put(r.Context(), key, body)
	switch {
	case err == nil:
		s.waiting.stored(key)
		w.WriteHeader(http.StatusCreated)
	case errors.Is(err, errkind.ErrExists):
		s.exists(w, r, key, "")
	default:
		var ab *door.Aborted
		if errors.As(err, &ab) {
			s.failStatus(w, r, http.StatusBadRequest, "aborted", fmt.Sprintf("%s: %v", key, err))
			return
		}
		s.fail(w, r, err)
	}
}

// exists answers a put whose name is taken, with the stored digest so the
// client can tell "already archived" from a conflict without reading back.
func (s *Server) exists(w http.ResponseWriter, r *http.Request, key, stored string) {
	writeJSON(w, http.StatusConflict, wire.ErrorBody{
		Code:   "exists",
		Error:  key + " already exists",
		Stored: stored,
	})
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	key, _, err := s.requestKey(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	note(r, "key", key)
	if spec := r.Header.Get("Range"); spec != "" {
		s.getRange(w, r, key, spec)
		return
	}
	rc, err := s.getWaiting(r, s.store(r), key)
	if errors.Is(err, errkind.ErrNotFound) && s.received(w, r, key) {
		return
	}
	if errors.Is(err, errkind.ErrNotFound) {
		err = s.scan.expired(key, err)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer rc.Close()
	if s.cfg.Passthrough {
		if n, ok := sizeOf(rc); ok {
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, rc)
		return
	}
	var hb bytes.Buffer
	hdr, err := envelope.ReadHeader(io.TeeReader(rc, &hb))
	if err == nil {
		err = hdr.CheckName(archive.Identity(key))
	}
	if err == nil {
		if n, ok := sizeOf(rc); ok && n != hdr.ObjectSize() {
			err = fmt.Errorf("%w: %d bytes stored, header says %d", errkind.ErrCorrupt, n, hdr.ObjectSize())
		}
	}
	if err != nil {
		if errors.Is(err, errkind.ErrCorrupt) {
			s.log.Error("stored object is corrupt", "key", key, "error", err.Error())
		}
		s.fail(w, r, fmt.Errorf("stored object %s: %w", key, err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(hdr.ObjectSize(), 10))
	w.Header().Set(wire.HeaderDigest, hdr.Digest.String())
	w.WriteHeader(http.StatusOK)
	w.Write(hb.Bytes())
	io.Copy(w, io.LimitReader(rc, hdr.PayloadSize))
}

// getRange answers a GET of a part of an object (Range: bytes=FIRST-LAST,
// one range): the bytes as stored, unchecked, since a part cannot be
// checked against the envelope's digests; the client checks what it
// reads (a delta restore, each block against its SHA-256).
func (s *Server) getRange(w http.ResponseWriter, r *http.Request, key, spec string) {
	first, last, ok := parseRange(spec)
	if !ok {
		s.fail(w, r, fmt.Errorf("%w: Range %q: want bytes=FIRST-LAST, one range", errkind.ErrInvalid, spec))
		return
	}
	note(r, "range", spec)
	rc, err := store.GetRange(r.Context(), s.store(r), key, first, last-first+1)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer rc.Close()
	// A range that starts past the object's end is not a part of it: 416,
	// with the object's size (RFC 9110 15.5.17), not 206 with no bytes.
	br := bufio.NewReader(rc)
	if _, err := br.Peek(1); err == io.EOF {
		if info, serr := s.store(r).Stat(r.Context(), key); serr == nil {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", info.Size))
		}
		s.failStatus(w, r, http.StatusRequestedRangeNotSatisfiable, "invalid", fmt.Sprintf("%s: range %s starts past the end of the object", key, spec))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", first, last))
	w.WriteHeader(http.StatusPartialContent)
	io.Copy(w, br)
}

// parseRange parses "bytes=FIRST-LAST" within an envelope's size.
func parseRange(spec string) (first, last int64, ok bool) {
	a, b, found := strings.Cut(strings.TrimPrefix(spec, "bytes="), "-")
	if !found || !strings.HasPrefix(spec, "bytes=") {
		return 0, 0, false
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || first < 0 || last < first || last >= envelope.MaxObjectSize {
		return 0, 0, false
	}
	return first, last, true
}

// sizeOf returns the size of a stored object's reader when the store can
// tell it without another request.
func sizeOf(rc io.ReadCloser) (int64, bool) {
	switch v := rc.(type) {
	case interface{ Size() int64 }:
		return v.Size(), v.Size() >= 0
	case interface{ Stat() (os.FileInfo, error) }:
		if fi, err := v.Stat(); err == nil {
			return fi.Size(), true
		}
	}
	return 0, false
}

func (s *Server) head(w http.ResponseWriter, r *http.Request) {
	key, _, err := s.requestKey(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	note(r, "key", key)
	info, err := s.store(r).Stat(r.Context(), key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	w.Header().Set("Last-Modified", info.ModTime.UTC().Format(http.TimeFormat))
	w.Header().Set(wire.HeaderMtime, strconv.FormatInt(info.ModTime.UnixNano(), 10))
	if info.Version != "" {
		w.Header().Set("ETag", info.Version)
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	key, k, err := s.requestKey(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	note(r, "key", key)
	if err := s.cfg.Store.Delete(r.Context(), key); err != nil {
		s.fail(w, r, err)
		return
	}
	if k.Kind == archive.KindRetiredRecord || k.Kind == archive.KindSystem {
		s.door.Rules().Forget(k.Archive)
	}
	if changesSummary(k) {
		s.scan.poke()
	}
	note(r, "outcome", "deleted")
	w.WriteHeader(http.StatusNoContent)
}

// list streams the listing as JSON lines, flushing as it goes, so that a
// listing of a large archive costs the server no memory. With dirs=1 it
// lists the next path components under the prefix instead.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	if err := store.ValidPrefix(prefix); err != nil {
		s.fail(w, r, err)
		return
	}
	note(r, "prefix", prefix)
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	n := 0
	var err error
	if r.URL.Query().Get("dirs") == "1" {
		var dirs []string
		dirs, err = store.ListDirs(r.Context(), s.store(r), prefix)
		for _, d := range dirs {
			n++
			enc.Encode(wire.ListEntry{Key: prefix + d + "/"})
		}
	} else {
		err = s.store(r).List(r.Context(), prefix, func(info store.Info) error {
			n++
			if n%500 == 0 {
				rc.Flush()
			}
			return enc.Encode(wire.ListEntry{Key: info.Key, Size: info.Size, MTime: info.ModTime})
		})
	}
	if err != nil {
		_, code := wire.Classify(err)
		enc.Encode(wire.ListEntry{Code: code, Error: err.Error()})
		note(r, "error", err.Error())
		return
	}
	enc.Encode(wire.ListEntry{End: true, Count: n})
	note(r, "count", n)
}

// store is the store to read from: past the cache when the client asks
// (Cache-Control: no-cache), as verify and retention do.
func (s *Server) store(r *http.Request) store.Store {
	if r.Header.Get("Cache-Control") == "no-cache" {
		if c, ok := store.As[store.Cache](s.cfg.Store); ok {
			note(r, "cache", "bypassed")
			return c.Uncached()
		}
	}
	return s.cfg.Store
}

func isNotFound(err error) bool { return errors.Is(err, errkind.ErrNotFound) }

// fail answers with the status and code for err.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := wire.Classify(err)
	var mbe *http.MaxBytesError
	var ab *door.Aborted
	switch {
	case errors.As(err, &mbe):
		status, code = http.StatusRequestEntityTooLarge, "invalid"
	case errors.As(err, &ab):
		status, code = http.StatusBadRequest, "aborted"
	}
	s.failStatus(w, r, status, code, err.Error())
}

func (s *Server) failStatus(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	note(r, "error", msg)
	note(r, "code", code)
	if (status < 500 || status == http.StatusInsufficientStorage) && status != http.StatusNotFound && code != "exists" {
		s.metrics.refused.WithLabelValues(code).Inc()
	}
	writeJSON(w, status, wire.ErrorBody{Code: code, Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// changesSummary: a write or delete of k changes an archive's summary
// enough to scan it again soon (backups, drills, retired timelines).
func changesSummary(k archive.Key) bool {
	switch k.Kind {
	case archive.KindDrill, archive.KindRetention, archive.KindRetiredRecord, archive.KindRestoredRecord, archive.KindQuarantineRecord:
		return true
	case archive.KindVerifyRecord:
		return true
	case archive.KindBackup:
		return k.File == archive.RecordFile
	}
	return false
}
