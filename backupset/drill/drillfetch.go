package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/wire"
)

// fetchDoor is how a drill's restore_command reaches the archive without
// any secret: a server on a unix socket in the drill's own directory
// (which only the drill and its PostgreSQL's OS user can open) that reads
// the WAL files of the one archive being drilled, through the drill's own
// connection, and nothing else. walfetch talks to it as to walstored
// (http+unix://). No token, key or certificate is written anywhere the
// drill's PostgreSQL, or what a backup carried into it, could read:
// encrypted objects are opened here and handed over as plain envelopes
// (same name binding, same SHA-256 of the content).
type fetchDoor struct {
	a      *archive.Archive
	srv    *http.Server
	socket string
}

func startFetchDoor(a *archive.Archive, socket string, uid, gid int) (*fetchDoor, error) {
	os.Remove(socket)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("the drill's fetch socket: %w", err)
	}
	if err := os.Chmod(socket, 0o600); err == nil && uid >= 0 {
		err = os.Chown(socket, uid, gid)
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	d := &fetchDoor{a: a, socket: socket}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/archives/{archive}/objects/{path...}", d.serve)
	mux.HandleFunc("HEAD /v1/archives/{archive}/objects/{path...}", d.serve)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d.refuse(w, http.StatusForbidden, "forbidden", "a drill's restore_command reads WAL files, nothing else")
	})
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go d.srv.Serve(ln)
	return d, nil
}

func (d *fetchDoor) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.srv.Shutdown(ctx)
	os.Remove(d.socket)
}

// URL is the repository URL walfetch is given.
func (d *fetchDoor) URL() string { return "http+unix://" + d.socket }

func (d *fetchDoor) refuse(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(wire.ErrorBody{Code: code, Error: msg})
}

func (d *fetchDoor) serve(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("archive") + "/" + r.PathValue("path")
	k, err := archive.ParseKey(key)
	// WAL files, and a retired timeline's record (walfetch answers the
	// probe for its history with the stand-in it holds).
	if err != nil || k.Archive != d.a.Name || k.Kind != archive.KindWAL && k.Kind != archive.KindRetiredRecord {
		d.refuse(w, http.StatusForbidden, "forbidden", fmt.Sprintf("%s: a drill's restore_command reads the WAL files of archive %s, nothing else", key, d.a.Name))
		return
	}
	body, info, err := d.read(r.Context(), key)
	if err != nil {
		status, code := wire.Classify(err)
		d.refuse(w, status, code, err.Error())
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set(wire.HeaderMtime, strconv.FormatInt(info.UnixNano(), 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}

// read returns the object under key as walfetch checks it: as stored, or,
// encrypted, opened (verified) here and sealed again in a plain envelope.
func (d *fetchDoor) read(ctx context.Context, key string) ([]byte, time.Time, error) {
	st, err := d.a.Store.Stat(ctx, key)
	if err != nil {
		return nil, time.Time{}, err
	}
	rc, err := d.a.Store.Get(ctx, key)
	if err != nil {
		return nil, time.Time{}, err
	}
	b, err := io.ReadAll(io.LimitReader(rc, envelope.MaxObjectSize+1))
	rc.Close()
	if err != nil {
		return nil, time.Time{}, err
	}
	hdr, err := envelope.ReadHeader(bytes.NewReader(b))
	if err != nil || !hdr.Encrypted() {
		return b, st.ModTime, nil // walfetch checks it, and says what is wrong
	}
	_, raw, err := d.a.Open(ctx, key)
	if err != nil {
		return nil, time.Time{}, err
	}
	content, err := io.ReadAll(raw)
	raw.Close()
	if err != nil {
		return nil, time.Time{}, err
	}
	enc := envelope.NewEncoder()
	enc.SystemID = hdr.SystemID
	obj, err := enc.EncodeBytes(content, key)
	if err != nil {
		return nil, time.Time{}, err
	}
	if obj.Header.Digest != hdr.Digest {
		return nil, time.Time{}, errors.New("the decrypted content does not match its digest")
	}
	return obj.Bytes(), st.ModTime, nil
}
