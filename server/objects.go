package server

import (
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
	"github.com/walstore/walstore/archive/httpstore"
)

// objectKey validates the archive and path of a request and returns the
// store key, and the WAL name when the object is a WAL file.
func objectKey(r *http.Request) (key string, wal archive.Name, err error) {
	a, p := r.PathValue("archive"), r.PathValue("path")
	if err := archive.ValidArchiveName(a); err != nil {
		return "", wal, err
	}
	key = a + "/" + p
	if err := archive.ValidKey(key); err != nil {
		return "", wal, err
	}
	kind, rest, _ := strings.Cut(p, "/")
	switch kind {
	case "wal":
		n, err := archive.ParseName(rest)
		if err != nil {
			return "", wal, err
		}
		return key, n, nil
	case "meta", "backups":
		if rest == "" {
			return "", wal, fmt.Errorf("%w: object path %q", archive.ErrInvalid, p)
		}
		return key, wal, nil
	}
	return "", wal, fmt.Errorf("%w: object path %q: want wal/, meta/ or backups/", archive.ErrInvalid, p)
}

func (s *Server) put(w http.ResponseWriter, r *http.Request) {
	key, wal, err := objectKey(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	note(r, "key", key)
	size := r.ContentLength
	switch {
	case size < 0:
		s.failStatus(w, r, http.StatusLengthRequired, "invalid", "Content-Length is required")
		return
	case size < archive.HeaderSize:
		s.fail(w, r, fmt.Errorf("%w: %d bytes is too short for an object", archive.ErrInvalid, size))
		return
	case size > archive.MaxObjectSize:
		s.failStatus(w, r, http.StatusRequestEntityTooLarge, "invalid", fmt.Sprintf("%s: %d bytes is more than the %d an object may have", key, size, int64(archive.MaxObjectSize)))
		return
	}
	body := http.MaxBytesReader(w, r.Body, size)
	var hb [archive.HeaderSize]byte
	if _, err := io.ReadFull(body, hb[:]); err != nil {
		s.fail(w, r, fmt.Errorf("%s: reading the object header: %w", key, err))
		return
	}
	hdr, err := archive.ParseHeader(hb[:])
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %s: %v", archive.ErrInvalid, key, err))
		return
	}
	if hdr.ObjectSize() != size {
		s.fail(w, r, fmt.Errorf("%w: %s: Content-Length %d, but the object header says %d", archive.ErrInvalid, key, size, hdr.ObjectSize()))
		return
	}
	note(r, "sha256", hdr.Digest.Short())
	if wal.Kind == archive.Segment || wal.Kind == archive.Partial {
		if hdr.SystemID == 0 {
			s.fail(w, r, fmt.Errorf("%w: %s: a segment must carry its system identifier", archive.ErrInvalid, key))
			return
		}
		a, err := s.archive(r.PathValue("archive"))
		if err == nil {
			err = a.Bind(r.Context(), hdr.SystemID)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
	}
	var src io.Reader = io.MultiReader(bytes.NewReader(hb[:]), body)
	if size <= s.cfg.BufferLimit {
		buf := make([]byte, size)
		copy(buf, hb[:])
		if _, err := io.ReadFull(body, buf[archive.HeaderSize:]); err != nil {
			s.fail(w, r, fmt.Errorf("%s: reading the body: %w", key, err))
			return
		}
		src = bytes.NewReader(buf)
	}
	out, err := archive.PutEnvelope(r.Context(), s.cfg.Store, key, hdr, src, size)
	var ce *archive.ConflictError
	switch {
	case err == nil && out == archive.Stored:
		note(r, "outcome", "stored")
		s.metrics.pushed(r.PathValue("archive"), wal, hdr.RawSize)
		s.waiting.stored(key)
		w.Header().Set(httpstore.HeaderOutcome, "stored")
		w.WriteHeader(http.StatusCreated)
	case err == nil && out == archive.AlreadyStored:
		note(r, "outcome", "identical")
		s.exists(w, r, key, hdr.Digest)
	case errors.As(err, &ce):
		note(r, "outcome", "conflict")
		s.metrics.conflicts.WithLabelValues(r.PathValue("archive")).Inc()
		s.log.Error("refused to overwrite an object with different content (a demoted primary still archiving? see README: split brain)",
			"key", key, "stored_sha256", ce.Stored.String(), "new_sha256", ce.New.String(), "remote", r.RemoteAddr)
		s.exists(w, r, key, ce.Stored)
	default:
		s.fail(w, r, err)
	}
}

// exists answers a put whose name is taken, with the stored digest so the
// client can tell "already archived" from a conflict without reading back.
func (s *Server) exists(w http.ResponseWriter, r *http.Request, key string, stored archive.Digest) {
	writeJSON(w, http.StatusConflict, httpstore.ErrorBody{
		Code:   "exists",
		Error:  key + " already exists",
		Stored: stored.String(),
	})
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	key, _, err := objectKey(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	note(r, "key", key)
	rc, err := s.getWaiting(r, s.store(r), key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer rc.Close()
	var hb [archive.HeaderSize]byte
	_, err = io.ReadFull(rc, hb[:])
	var hdr archive.Header
	if err == nil {
		hdr, err = archive.ParseHeader(hb[:])
	} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%w: shorter than an object header", archive.ErrCorrupt)
	}
	if err == nil {
		if n, ok := sizeOf(rc); ok && n != hdr.ObjectSize() {
			err = fmt.Errorf("%w: %d bytes stored, header says %d", archive.ErrCorrupt, n, hdr.ObjectSize())
		}
	}
	if err != nil {
		if errors.Is(err, archive.ErrCorrupt) {
			s.log.Error("stored object is corrupt", "key", key, "error", err.Error())
		}
		s.fail(w, r, fmt.Errorf("stored object %s: %w", key, err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(hdr.ObjectSize(), 10))
	w.Header().Set(httpstore.HeaderDigest, hdr.Digest.String())
	w.WriteHeader(http.StatusOK)
	w.Write(hb[:])
	io.Copy(w, io.LimitReader(rc, hdr.PayloadSize))
}

// sizeOf returns the size of a stored object's reader when the store can
// tell it without another request.
func sizeOf(rc io.ReadCloser) (int64, bool) {
	switch v := rc.(type) {
	case interface{ Stat() (os.FileInfo, error) }:
		if fi, err := v.Stat(); err == nil {
			return fi.Size(), true
		}
	case interface{ Size() int64 }:
		return v.Size(), true
	}
	return 0, false
}

func (s *Server) head(w http.ResponseWriter, r *http.Request) {
	key, _, err := objectKey(r)
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
	w.Header().Set("Walstore-Mtime", strconv.FormatInt(info.ModTime.UnixNano(), 10))
	w.WriteHeader(http.StatusOK)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	key, _, err := objectKey(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	note(r, "key", key)
	if err := s.cfg.Store.Delete(r.Context(), key); err != nil {
		s.fail(w, r, err)
		return
	}
	note(r, "outcome", "deleted")
	w.WriteHeader(http.StatusNoContent)
}

// list streams the listing as JSON lines, flushing as it goes, so that a
// listing of a large archive costs the server no memory.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	if err := archive.ValidPrefix(prefix); err != nil {
		s.fail(w, r, err)
		return
	}
	note(r, "prefix", prefix)
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	n := 0
	err := s.cfg.Store.List(r.Context(), prefix, func(info archive.Info) error {
		n++
		if n%500 == 0 {
			rc.Flush()
		}
		return enc.Encode(httpstore.ListEntry{Key: info.Key, Size: info.Size, MTime: info.ModTime})
	})
	if err != nil {
		_, code := httpstore.Classify(err)
		enc.Encode(httpstore.ListEntry{Code: code, Error: err.Error()})
		note(r, "error", err.Error())
		return
	}
	enc.Encode(httpstore.ListEntry{End: true, Count: n})
	note(r, "count", n)
}

// store is the store to read from: past the cache when the client asks
// (Cache-Control: no-cache), as verify and retention do.
func (s *Server) store(r *http.Request) archive.Store {
	if r.Header.Get("Cache-Control") == "no-cache" {
		if u, ok := s.cfg.Store.(interface{ Unwrap() archive.Store }); ok {
			note(r, "cache", "bypassed")
			return u.Unwrap()
		}
	}
	return s.cfg.Store
}

func isNotFound(err error) bool { return errors.Is(err, archive.ErrNotFound) }

// fail answers with the status and code for err.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := httpstore.Classify(err)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		status, code = http.StatusRequestEntityTooLarge, "invalid"
	}
	s.failStatus(w, r, status, code, err.Error())
}

func (s *Server) failStatus(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	note(r, "error", msg)
	if status < 500 && status != http.StatusNotFound && code != "exists" {
		s.metrics.refused.WithLabelValues(code).Inc()
	}
	writeJSON(w, status, httpstore.ErrorBody{Code: code, Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
