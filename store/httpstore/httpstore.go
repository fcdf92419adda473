// Package httpstore is the client side of walstored: a store.Store that
// talks to a walstored serve over HTTP(S), with the protocol of
// base/wire. walstored checks what it is sent at its edge (the
// archive's rules: envelopes, bindings, scopes), so this store also tells
// the repository layer that it need not repeat those reads (Guarded).
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
	"syscall"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/tlsconf"
	"github.com/walstore/walstore/base/wire"
	"github.com/walstore/walstore/store"
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

// Store is a store.Store backed by walstored.
type Store struct {
	base    *url.URL
	client  *http.Client
	token   string
	noCache bool
}

// New returns a store for the walstored at rawURL (http:// or https://),
// or for a server on a unix socket (http+unix:///path/to/socket: a
// restore drill's read-only door to one archive).
func New(rawURL string, opt Options) (*Store, error) {
	if socket, ok := strings.CutPrefix(rawURL, "http+unix://"); ok {
		if !strings.HasPrefix(socket, "/") || strings.ContainsAny(socket, "?#") {
			return nil, fmt.Errorf("%w: repository URL %q: want http+unix:///absolute/path/to/socket", errkind.ErrInvalid, rawURL)
		}
		dial := &net.Dialer{Timeout: 5 * time.Second}
		rt := &http.Transport{
			Proxy:                 nil,
			DialContext:           func(ctx context.Context, _, _ string) (net.Conn, error) { return dial.DialContext(ctx, "unix", socket) },
			ResponseHeaderTimeout: 2 * time.Minute,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       30 * time.Second,
		}
		return &Store{base: &url.URL{Scheme: "http", Host: "walstore-drill"}, client: &http.Client{Transport: rt}, token: opt.Token, noCache: opt.NoCache}, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: repository URL %q: want http://host:port or https://host:port", errkind.ErrInvalid, rawURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: repository URL %q: credentials do not belong in the URL; use --token-file", errkind.ErrInvalid, u.Redacted())
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return nil, fmt.Errorf("%w: repository URL %q: no path or query expected", errkind.ErrInvalid, u.Redacted())
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
			return nil, fmt.Errorf("%w: %v", errkind.ErrConfig, err)
		}
		tr.TLSClientConfig = cfg
	}
	return tr, nil
}

// Describe implements store.Describer.
func (s *Store) Describe() string { return s.base.String() }

// Guarded reports that walstored enforces the archive's rules (system
// binding, verified bodies, bound names) for whatever this client writes.
func (s *Store) Guarded() bool { return true }

func (s *Store) request(ctx context.Context, method, path string, body store.Body) (*http.Request, error) {
	var r io.Reader
	if body != nil {
		r = io.NopCloser(store.Exact(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base.String()+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = body.Len()
		if body.Len() == 0 {
			req.Body = http.NoBody
		}
		// A retried request (a connection the server closed) starts the
		// body again, when the body can.
		req.GetBody = func() (io.ReadCloser, error) {
			if err := body.Rewind(); err != nil {
				return nil, err
			}
			return io.NopCloser(store.Exact(body)), nil
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

// call makes a request without a body and returns the response.
func (s *Store) call(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := s.request(ctx, method, path, nil)
	if err != nil {
		return nil, err
	}
	return s.do(req)
}

func (s *Store) do(req *http.Request) (*http.Response, error) {
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, s.transportError(req, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// transportError names what went wrong below HTTP. Mistakes a retry
// cannot fix (trust, protocol) are permanent and say what to change.
func (s *Store) transportError(req *http.Request, err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // the URL is in our own message already
	}
	// A body that ends early or runs long is refused before it is sent.
	if errors.Is(err, errkind.ErrInvalid) {
		return err
	}
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		return fmt.Errorf("%w: TLS: walstored at %s presented a certificate this client does not trust (give the CA that signed it with --cacert): %v", errkind.ErrUnauthorized, s.base.Host, verr.Err)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && strings.HasPrefix(op.Err.Error(), "tls:") {
		return fmt.Errorf("%w: TLS: walstored at %s refused the connection (%v): it wants a client certificate it trusts (--client-cert, --client-key)", errkind.ErrUnauthorized, s.base.Host, op.Err)
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%w: walstored at %s speaks plain HTTP: use http:// in --repo, or serve TLS (--tls-cert)", errkind.ErrConfig, s.base.Host)
	case strings.Contains(msg, "malformed HTTP response") && strings.Contains(msg, "\\x15\\x03"):
		return fmt.Errorf("%w: walstored at %s speaks TLS: use https:// in --repo", errkind.ErrConfig, s.base.Host)
	}
	var dialErr *net.OpError
	dialTimeout := errors.As(err, &dialErr) && dialErr.Op == "dial" && dialErr.Timeout()
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) || dialTimeout {
		return fmt.Errorf("%s %s: %w: %w", req.Method, s.base.Host, ErrUnreachable, err)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return fmt.Errorf("%w: %s %s: host %s not found (check --repo)", errkind.ErrConfig, req.Method, s.base.Host, dnsErr.Name)
	}
	return fmt.Errorf("%s %s: %w", req.Method, s.base.Host, err)
}

// ErrUnreachable marks a walstored that could not be connected to (not
// running, wrong port, host down: refused, no route, or the connect
// timeout passed): worth trying another instance at once rather than
// waiting for this one.
var ErrUnreachable = errors.New("walstored not reachable")

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb wire.ErrorBody
	if resp.Request.Method != http.MethodHead && json.Unmarshal(b, &eb) == nil && eb.Code != "" {
		return &wire.RemoteError{Status: resp.StatusCode, Code: eb.Code, Msg: eb.Error, Stored: eb.Stored}
	}
	msg := string(b)
	if strings.Contains(msg, "HTTP request to an HTTPS server") {
		u := *resp.Request.URL
		u.Scheme, u.Path, u.RawQuery = "https", "", ""
		return &wire.RemoteError{Status: resp.StatusCode, Code: "invalid", Msg: fmt.Sprintf("walstored at %s serves HTTPS: use --repo %s", resp.Request.URL.Host, u.String())}
	}
	if len(msg) > 200 || strings.ContainsAny(msg, "<\x00") {
		msg = ""
	}
	if msg == "" {
		msg = fmt.Sprintf("%s %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status)
	}
	return wire.StatusError(resp.StatusCode, msg)
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, body store.Body) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	req, err := s.request(ctx, http.MethodPut, wire.ObjectPath(key), body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := s.do(req)
	if err != nil {
		var re *wire.RemoteError
		if errors.As(err, &re) && re.Code == "exists" {
			return &store.ExistsError{Key: key, Identity: re.Stored}
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if n := store.NotePut(ctx); n != nil && resp.Header.Get(wire.HeaderOutcome) == wire.OutcomeRepaired {
		n.Repaired = true
	}
	return nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.GetWait(ctx, key, 0)
}

// GetRange implements store.Ranger with an HTTP Range request. A
// walstored that does not know ranges answers with the whole object,
// whose start is then skipped.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := store.ValidKey(key); err != nil {
		return nil, err
	}
	if err := store.ValidRange(key, off, n); err != nil {
		return nil, err
	}
	if n == 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	req, err := s.request(ctx, http.MethodGet, wire.ObjectPath(key), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	resp, err := s.do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusPartialContent {
		if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil && err != io.EOF {
			resp.Body.Close()
			return nil, err
		}
	}
	return store.LimitReadCloser(resp.Body, n), nil
}

type acceptPartialKey struct{}

// AcceptPartial marks a GET's context: a segment walstored's WAL receiver
// is still receiving may be answered, zero-padded (walfetch in archive
// recovery, whose end of the archive is what the receiver flushed).
func AcceptPartial(ctx context.Context) context.Context {
	return context.WithValue(ctx, acceptPartialKey{}, true)
}

// GetWait implements store.Waiter: the server waits up to wait for an
// object that is not stored yet before answering "not found".
func (s *Store) GetWait(ctx context.Context, key string, wait time.Duration) (io.ReadCloser, error) {
	if err := store.ValidKey(key); err != nil {
		return nil, err
	}
	req, err := s.request(ctx, http.MethodGet, wire.ObjectPath(key), nil)
	if err != nil {
		return nil, err
	}
	if wait > 0 {
		req.Header.Set(wire.HeaderWait, wait.String())
	}
	if ctx.Value(acceptPartialKey{}) != nil {
		req.Header.Set(wire.HeaderPartial, wire.AcceptPartial)
	}
	resp, err := s.do(req)
	if err != nil {
		return nil, err
	}
	return &body{ReadCloser: resp.Body, size: resp.ContentLength}, nil
}

// body is a Get result that knows its size.
type body struct {
	io.ReadCloser
	size int64
}

func (b *body) Size() int64 { return b.size }

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	if err := store.ValidKey(key); err != nil {
		return store.Info{}, err
	}
	req, err := s.request(ctx, http.MethodHead, wire.ObjectPath(key), nil)
	if err != nil {
		return store.Info{}, err
	}
	resp, err := s.do(req)
	if err != nil {
		if re := (*wire.RemoteError)(nil); errors.As(err, &re) && re.Status == http.StatusNotFound {
			return store.Info{}, fmt.Errorf("stat %s: %w", key, errkind.ErrNotFound)
		}
		return store.Info{}, err
	}
	resp.Body.Close()
	info := store.Info{Key: key, Size: resp.ContentLength, Version: resp.Header.Get("ETag")}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		info.ModTime, _ = http.ParseTime(lm)
	}
	if v := resp.Header.Get(wire.HeaderMtime); v != "" {
		if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
			info.ModTime = time.Unix(0, ns)
		}
	}
	return info, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	resp, err := s.call(ctx, http.MethodDelete, wire.ObjectPath(key))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Stores asks walstored about the stores behind it (a token of scope
// admin or metrics).
func (s *Store) Stores(ctx context.Context) ([]store.Health, error) {
	var out []store.Health
	return out, s.GetJSON(ctx, wire.PathStores, &out)
}

// GetJSON fetches a JSON document of walstored's API into v.
func (s *Store) GetJSON(ctx context.Context, path string, v any) error {
	resp, err := s.call(ctx, http.MethodGet, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v)
}

// List implements store.Store. The server streams the whole listing in
// one response; a listing without its end marker is an error, never a
// silently short list.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if err := store.ValidPrefix(prefix); err != nil {
		return err
	}
	resp, err := s.call(ctx, http.MethodGet, wire.ListPath(prefix))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	n := 0
	for sc.Scan() {
		var e wire.ListEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("list %q: bad line from server: %w", prefix, err)
		}
		switch {
		case e.Error != "":
			return &wire.RemoteError{Status: http.StatusServiceUnavailable, Code: e.Code, Msg: e.Error}
		case e.End:
			if e.Count != n {
				return fmt.Errorf("list %q: server counted %d entries, received %d", prefix, e.Count, n)
			}
			return nil
		}
		n++
		if err := fn(store.Info{Key: e.Key, Size: e.Size, ModTime: e.MTime}); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return fmt.Errorf("list %q: listing cut short after %d entries", prefix, n)
}

// ListDirs implements store.DirLister with walstored's listing of path
// components.
func (s *Store) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if err := store.ValidPrefix(prefix); err != nil {
		return nil, err
	}
	resp, err := s.call(ctx, http.MethodGet, wire.ListPath(prefix)+"&dirs=1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(io.LimitReader(resp.Body, 64<<20))
	var out []string
	for {
		var e wire.ListEntry
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("list %q: listing cut short: %w", prefix, err)
		}
		switch {
		case e.Error != "":
			return nil, &wire.RemoteError{Status: http.StatusServiceUnavailable, Code: e.Code, Msg: e.Error}
		case e.End:
			return out, nil
		}
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(e.Key, prefix), "/"))
	}
}
