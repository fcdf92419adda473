// Package httpstore is the client side of walstored: an archive.Store that
// talks to a walstored serve over HTTP(S). It also defines the wire
// protocol (protocol.go) that the server implements, so both sides share
// one definition.
package httpstore

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/internal/tlsconf"
)

// Options configures the client.
type Options struct {
	// Token is sent as a bearer token (read it from a file or the
	// environment, never from argv).
	Token string
	// CACertFile, when set, is the only CA trusted for https.
	CACertFile string
	// ClientCertFile and ClientKeyFile, when set, present a client
	// certificate.
	ClientCertFile, ClientKeyFile string
	// DialTimeout bounds connection set-up (default 5 s); the overall
	// deadline of each call comes from its context.
	DialTimeout time.Duration
	// NoCache asks walstored to read past its cache: admin commands
	// (verify, retain, list) must see what the store holds now.
	NoCache bool
	// Transport replaces the default transport (tests).
	Transport http.RoundTripper
}

// Store is an archive.Store backed by walstored.
type Store struct {
	base    *url.URL
	client  *http.Client
	token   string
	noCache bool
}

// New returns a store for the walstored at rawURL (http:// or https://).
func New(rawURL string, opt Options) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: repository URL %q: want http://host:port or https://host:port", archive.ErrInvalid, rawURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: repository URL %q: credentials do not belong in the URL; use --token-file", archive.ErrInvalid, u.Redacted())
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return nil, fmt.Errorf("%w: repository URL %q: no path or query expected", archive.ErrInvalid, u.Redacted())
	}
	u.Path = ""
	rt := opt.Transport
	if rt == nil {
		tr, err := transport(u, opt)
		if err != nil {
			return nil, err
		}
		rt = tr
	}
	return &Store{base: u, client: &http.Client{Transport: rt}, token: opt.Token, noCache: opt.NoCache}, nil
}

func transport(u *url.URL, opt Options) (*http.Transport, error) {
	dial := opt.DialTimeout
	if dial <= 0 {
		dial = 5 * time.Second
	}
	tr := &http.Transport{
		Proxy:                 nil, // WAL goes straight to the archive, never via an env-configured proxy
		DialContext:           (&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		ExpectContinueTimeout: time.Second,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	if u.Scheme == "https" {
		cfg, err := tlsconf.Client(opt.CACertFile, opt.ClientCertFile, opt.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", archive.ErrInvalid, err)
		}
		tr.TLSClientConfig = cfg
	}
	return tr, nil
}

// Describe implements archive.Describer.
func (s *Store) Describe() string { return s.base.String() }

func (s *Store) request(ctx context.Context, method, path string, body io.Reader, size int64) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.base.String()+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
		if rs, ok := body.(io.ReadSeeker); ok {
			start, _ := rs.Seek(0, io.SeekCurrent)
			req.GetBody = func() (io.ReadCloser, error) {
				if _, err := rs.Seek(start, io.SeekStart); err != nil {
					return nil, err
				}
				return io.NopCloser(rs), nil
			}
		}
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	req.Header.Set("User-Agent", "walstore")
	if s.noCache {
		req.Header.Set("Cache-Control", "no-cache")
	}
	return req, nil
}

func (s *Store) do(req *http.Request) (*http.Response, error) {
	resp, err := s.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is in our own message already
		}
		// A certificate that does not verify will not verify on retry.
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("%w: TLS: walstored at %s presented a certificate this client does not trust (give the CA that signed it with --cacert): %v", archive.ErrUnauthorized, s.base.Host, verr.Err)
		}
		// The server refused the handshake (an alert): no client
		// certificate, or one it does not accept. Retrying cannot help.
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "remote error" && strings.HasPrefix(op.Err.Error(), "tls:") {
			return nil, fmt.Errorf("%w: TLS: walstored at %s refused the connection (%v): it wants a client certificate it trusts (--client-cert, --client-key)", archive.ErrUnauthorized, s.base.Host, op.Err)
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, s.base.Host, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb ErrorBody
	if resp.Request.Method != http.MethodHead && json.Unmarshal(b, &eb) == nil && eb.Code != "" {
		return &RemoteError{Status: resp.StatusCode, Code: eb.Code, Msg: eb.Error, Stored: eb.Stored}
	}
	msg := string(b)
	if len(msg) > 200 || strings.ContainsAny(msg, "<\x00") {
		msg = ""
	}
	if msg == "" {
		msg = fmt.Sprintf("%s %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status)
	}
	return statusError(resp.StatusCode, msg)
}

// Put implements archive.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := archive.ValidKey(key); err != nil {
		return err
	}
	req, err := s.request(ctx, http.MethodPut, ObjectPath(key), r, size)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := s.do(req)
	if err != nil {
		var re *RemoteError
		if errors.As(err, &re) && re.Code == "exists" {
			if d, derr := archive.ParseDigest(re.Stored); derr == nil {
				return &archive.ExistsError{Key: key, Stored: d}
			}
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return nil
}

// Get implements archive.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.GetWait(ctx, key, 0)
}

// GetWait is Get that asks the server to wait up to wait for an object
// that is not stored yet before answering "not found".
func (s *Store) GetWait(ctx context.Context, key string, wait time.Duration) (io.ReadCloser, error) {
	if err := archive.ValidKey(key); err != nil {
		return nil, err
	}
	req, err := s.request(ctx, http.MethodGet, ObjectPath(key), nil, 0)
	if err != nil {
		return nil, err
	}
	if wait > 0 {
		req.Header.Set(HeaderWait, wait.String())
	}
	resp, err := s.do(req)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Stat implements archive.Store.
func (s *Store) Stat(ctx context.Context, key string) (archive.Info, error) {
	if err := archive.ValidKey(key); err != nil {
		return archive.Info{}, err
	}
	req, err := s.request(ctx, http.MethodHead, ObjectPath(key), nil, 0)
	if err != nil {
		return archive.Info{}, err
	}
	resp, err := s.do(req)
	if err != nil {
		if re := (*RemoteError)(nil); errors.As(err, &re) && re.Status == http.StatusNotFound {
			return archive.Info{}, fmt.Errorf("stat %s: %w", key, archive.ErrNotFound)
		}
		return archive.Info{}, err
	}
	resp.Body.Close()
	info := archive.Info{Key: key, Size: resp.ContentLength}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		info.ModTime, _ = http.ParseTime(lm)
	}
	if v := resp.Header.Get("Walstore-Mtime"); v != "" {
		if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
			info.ModTime = time.Unix(0, ns)
		}
	}
	return info, nil
}

// Delete implements archive.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := archive.ValidKey(key); err != nil {
		return err
	}
	req, err := s.request(ctx, http.MethodDelete, ObjectPath(key), nil, 0)
	if err != nil {
		return err
	}
	resp, err := s.do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// StoreHealth is one line of GET /v1/stores.
type StoreHealth struct {
	Name      string    `json:"name"`
	Up        bool      `json:"up"`
	LastError string    `json:"last_error,omitempty"`
	LastOK    time.Time `json:"last_ok,omitzero"`
	Owed      int       `json:"owed_objects"`
}

// Stores asks walstored about the stores behind it.
func (s *Store) Stores(ctx context.Context) ([]StoreHealth, error) {
	req, err := s.request(ctx, http.MethodGet, "/v1/stores", nil, 0)
	if err != nil {
		return nil, err
	}
	resp, err := s.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []StoreHealth
	return out, json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out)
}

// List implements archive.Store. The server streams the whole listing in
// one response; a listing without its end marker is an error, never a
// silently short list.
func (s *Store) List(ctx context.Context, prefix string, fn func(archive.Info) error) error {
	if err := archive.ValidPrefix(prefix); err != nil {
		return err
	}
	req, err := s.request(ctx, http.MethodGet, ListPath(prefix), nil, 0)
	if err != nil {
		return err
	}
	resp, err := s.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	n := 0
	for sc.Scan() {
		var e ListEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("list %q: bad line from server: %w", prefix, err)
		}
		switch {
		case e.Error != "":
			return &RemoteError{Status: http.StatusServiceUnavailable, Code: e.Code, Msg: e.Error}
		case e.End:
			if e.Count != n {
				return fmt.Errorf("list %q: server counted %d entries, received %d", prefix, e.Count, n)
			}
			return nil
		}
		n++
		if err := fn(archive.Info{Key: e.Key, Size: e.Size, ModTime: e.MTime}); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return fmt.Errorf("list %q: listing cut short after %d entries", prefix, n)
}
