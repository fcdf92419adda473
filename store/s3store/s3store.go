// Package s3store is a store.Store in an S3-compatible bucket (MinIO on
// premises, AWS S3), built on minio-go.
//
// Write-once comes from a conditional PUT (If-None-Match: *): the store
// answers 412 when the name exists, atomically, however many walstored
// instances or direct clients write at once. Opening for writing checks
// once that the endpoint honours the condition and refuses to run if it
// does not, unless the operator opted in to the weaker stat-then-put mode
// (conditional=off), which has a race documented in the README. The check
// leaves its probe object in the bucket as the record that it passed, so
// later opens cost one HEAD, never a delete (push credentials need no
// delete right), and none at all when the caller remembers the answer.
// Replace (repair, recompression) is a PUT with If-Match on the old ETag.
//
// No call can hang: every request has a deadline (Options.Timeout plus a
// size allowance), connections have dial and header timeouts, and minio-go
// retries with bounded backoff inside that deadline. Large objects go up in
// multipart uploads that minio-go aborts on failure, so nothing is left
// half-visible.
package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/base/tlsconf"
	"github.com/walstore/walstore/base/units"
	"github.com/walstore/walstore/store"
)

// Options are what the URL does not carry.
type Options struct {
	// Static credentials (from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
	// read by the caller). When empty, ~/.aws/credentials and IAM roles
	// are tried.
	AccessKey, SecretKey, SessionToken string
	// ReadOnly skips the conditional-write check (walfetch never writes).
	ReadOnly bool
	// ConditionalKnown skips the conditional-write check because the
	// caller remembers that it passed for this endpoint and bucket.
	ConditionalKnown bool
}

// Config is a parsed s3:// URL:
//
//	s3://BUCKET[/PREFIX]?endpoint=HOST:PORT&region=R&tls=true|false&ca=FILE
//	    &timeout=60s&retries=5&conditional=required|off&part-size=16MiB
type Config struct {
	Bucket      string
	Prefix      string // "" or ending in "/"
	Endpoint    string
	Region      string
	TLS         bool
	CAFile      string
	Timeout     time.Duration // per request, before the size allowance
	Retries     int
	Conditional bool // false: weak stat-then-put mode
	PartSize    uint64
}

// ParseURL parses an s3:// repository URL.
func ParseURL(raw string) (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: S3 URL %q: %s", errkind.ErrInvalid, raw, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" {
		return bad("want s3://bucket/prefix?endpoint=host:port")
	}
	if u.User != nil {
		return bad("credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	c := Config{
		Bucket:      u.Host,
		Prefix:      strings.Trim(u.Path, "/"),
		Endpoint:    "s3.amazonaws.com",
		TLS:         true,
		Timeout:     time.Minute,
		Retries:     5,
		Conditional: true,
		PartSize:    16 << 20,
	}
	if c.Bucket == "" {
		return bad("no bucket")
	}
	if c.Prefix != "" {
		if err := store.ValidKey(c.Prefix); err != nil {
			return bad("prefix: %v", err)
		}
		c.Prefix += "/"
	}
	q := u.Query()
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "endpoint":
			if v == "" || strings.ContainsAny(v, "/?#@") {
				return bad("endpoint=%q: want host or host:port", v)
			}
			c.Endpoint = v
		case "region":
			c.Region = v
		case "tls":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad("tls=%q: want true or false", v)
			}
			c.TLS = b
		case "ca":
			c.CAFile = v
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return bad("timeout=%q: want a duration like 30s", v)
			}
			c.Timeout = d
		case "retries":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 20 {
				return bad("retries=%q: want 1 to 20", v)
			}
			c.Retries = n
		case "conditional":
			switch v {
			case "required":
				c.Conditional = true
			case "off":
				c.Conditional = false
			default:
				return bad("conditional=%q: want required or off", v)
			}
		case "part-size":
			n, err := units.ParseSize(v)
			if err != nil || n < 5<<20 || n > 1<<30 {
				return bad("part-size=%q: want 5MiB to 1GiB", v)
			}
			c.PartSize = uint64(n)
		default:
			return bad("unknown parameter %q", k)
		}
	}
	return c, nil
}

// Store is a store.Store in a bucket.
type Store struct {
	cfg    Config
	client *minio.Client
}

// Open connects to the bucket named by rawURL. Opened for writing, with
// conditional writes required (the default), it checks that the endpoint
// refuses a second conditional PUT of one name (see checkConditional).
// Nothing else is asked of the endpoint: a missing bucket or bad
// credentials show at the first request, with a clear error.
func Open(ctx context.Context, rawURL string, opt Options) (*Store, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	tr, err := transport(cfg)
	if err != nil {
		return nil, err
	}
	var creds *credentials.Credentials
	if opt.AccessKey != "" {
		creds = credentials.NewStaticV4(opt.AccessKey, opt.SecretKey, opt.SessionToken)
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.FileAWSCredentials{},
			&credentials.IAM{Client: &http.Client{Transport: tr, Timeout: 10 * time.Second}},
		})
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        creds,
		Secure:       cfg.TLS,
		Region:       cfg.Region,
		Transport:    tr,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   cfg.Retries,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: S3 endpoint %s: %v", errkind.ErrInvalid, cfg.Endpoint, err)
	}
	s := &Store{cfg: cfg, client: client}
	if cfg.Conditional && !opt.ReadOnly && !opt.ConditionalKnown {
		cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		if err := s.checkConditional(cctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func transport(cfg Config) (*http.Transport, error) {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
	}
	if cfg.TLS {
		tc, err := tlsconf.Client(cfg.CAFile, "", "")
		if err != nil {
			return nil, fmt.Errorf("%w: S3 endpoint: %v", errkind.ErrInvalid, err)
		}
		tr.TLSClientConfig = tc
	}
	return tr, nil
}

// probeKey is the object that records a passed conditional-write check.
// Its name starts with a dot, so it is not a valid key: List never shows it.
const probeKey = ".walstore/conditional-write-checked"

// checkConditional proves that the endpoint honours If-None-Match: *. A
// conditional PUT of the probe object must be refused if it exists: that
// refusal is the proof, and costs one request. The first time, the probe
// is written and then written again, and the second write must be refused.
// The probe stays as the record of the check (no delete right needed).
func (s *Store) checkConditional(ctx context.Context) error {
	probe := s.cfg.Prefix + probeKey
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	opts.SetMatchETagExcept("*")
	for i := range 2 {
		_, err := s.client.PutObject(ctx, s.cfg.Bucket, probe, strings.NewReader("probe"), 5, opts)
		switch {
		case err != nil && errors.Is(s.classify(err), errkind.ErrExists):
			return nil
		case err != nil:
			return fmt.Errorf("%s: conditional-write check: %w", s.Describe(), s.classify(err))
		case i == 1:
			return fmt.Errorf("%w: %s does not honour conditional writes (If-None-Match: *), so two writers could overwrite each other's WAL; "+
				"use an endpoint that does (MinIO, AWS S3) or, knowingly, add conditional=off to the URL (see README)", errkind.ErrConfig, s.Describe())
		}
	}
	return nil
}

// Describe implements store.Describer.
func (s *Store) Describe() string {
	scheme := "https"
	if !s.cfg.TLS {
		scheme = "http"
	}
	return fmt.Sprintf("s3://%s/%s (%s://%s)", s.cfg.Bucket, s.cfg.Prefix, scheme, s.cfg.Endpoint)
}

// deadline is the request timeout plus one second per MiB, so that a large
// object on a slow link is not cut off while a dead endpoint still fails
// fast.
func (s *Store) deadline(ctx context.Context, size int64) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout+time.Duration(size>>20)*time.Second)
}

// reader turns a body into what minio-go wants: a section reader (which it
// can re-read for retries and read in parallel for multipart) when the
// body is in memory or a file, else a stream checked against its length.
func reader(body store.Body) io.Reader {
	if ra, ok := body.(store.ReaderAtBody); ok {
		return io.NewSectionReader(ra.ReaderAt(), 0, body.Len())
	}
	return store.Exact(body)
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, body store.Body) error {
	return s.put(ctx, "put", key, body, func(o *minio.PutObjectOptions) {
		if s.cfg.Conditional {
			o.SetMatchETagExcept("*")
		}
	})
}

// Replace implements store.Replacer: a PUT conditional on the old ETag.
func (s *Store) Replace(ctx context.Context, key string, old store.Info, body store.Body) error {
	if old.Version == "" {
		if _, err := s.Stat(ctx, key); err != nil {
			return fmt.Errorf("replace %s: %w", key, err)
		}
		return fmt.Errorf("%w: replace %s: no version of the stored copy", errkind.ErrInvalid, key)
	}
	return s.put(ctx, "replace", key, body, func(o *minio.PutObjectOptions) { o.SetMatchETag(old.Version) })
}

func (s *Store) put(ctx context.Context, op, key string, body store.Body, cond func(*minio.PutObjectOptions)) error {
	if err := store.ValidKey(key); err != nil {
		return err
	}
	size := body.Len()
	if size < 0 {
		return fmt.Errorf("%w: %s %s: size %d", errkind.ErrInvalid, op, key, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	ctx, cancel := s.deadline(ctx, size)
	defer cancel()
	obj := s.cfg.Prefix + key
	if !s.cfg.Conditional && op == "put" {
		// Weak mode: a second writer between this stat and the put can
		// replace the object. Only for endpoints without conditional writes.
		if _, err := s.Stat(ctx, key); err == nil {
			return fmt.Errorf("put %s: %w", key, errkind.ErrExists)
		} else if !errors.Is(err, errkind.ErrNotFound) {
			return err
		}
	}
	opts := minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    s.cfg.PartSize,
		NumThreads:  4,
	}
	cond(&opts)
	info, err := s.client.PutObject(ctx, s.cfg.Bucket, obj, reader(body), size, opts)
	if err != nil {
		err = s.classify(err)
		if op == "replace" && errors.Is(err, errkind.ErrExists) {
			err = fmt.Errorf("%w: the stored copy changed meanwhile", errkind.ErrConflict)
		}
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	if info.Size != size {
		return fmt.Errorf("%s %s: store acknowledged %d bytes of %d", op, key, info.Size, size)
	}
	return nil
}

// object is a Get result: the body, its size, and the deadline to release.
type object struct {
	*minio.Object
	size  int64
	timer *time.Timer
	stop  context.CancelFunc
}

func (o *object) Size() int64 { return o.size }

func (o *object) Close() error {
	err := o.Object.Close()
	o.timer.Stop()
	o.stop()
	return err
}

// Get implements store.Store with one request: the GET's response headers
// give the size, and the deadline is then stretched by one second per MiB
// of it, so a large object on a slow link is not cut off while a dead
// endpoint still fails fast.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.get(ctx, key, minio.GetObjectOptions{})
}

// GetRange implements store.Ranger with a ranged GET.
func (s *Store) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := store.ValidRange(key, off, n); err != nil {
		return nil, err
	}
	if n == 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+n-1); err != nil {
		return nil, fmt.Errorf("get %s: %w: %v", key, errkind.ErrInvalid, err)
	}
	return s.get(ctx, key, opts)
}

func (s *Store) get(ctx context.Context, key string, opts minio.GetObjectOptions) (io.ReadCloser, error) {
	if err := store.ValidKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	gctx, stop := context.WithCancel(ctx)
	timer := time.AfterFunc(s.cfg.Timeout, stop)
	o, err := s.client.GetObject(gctx, s.cfg.Bucket, s.cfg.Prefix+key, opts)
	var info minio.ObjectInfo
	if err == nil {
		info, err = o.Stat()
	}
	if err != nil {
		timer.Stop()
		stop()
		if o != nil {
			o.Close()
		}
		return nil, fmt.Errorf("get %s: %w", key, s.classify(err))
	}
	timer.Reset(s.cfg.Timeout + time.Duration(info.Size>>20)*time.Second)
	return &object{Object: o, size: info.Size, timer: timer, stop: stop}, nil
}

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	if err := store.ValidKey(key); err != nil {
		return store.Info{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, s.cfg.Prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return store.Info{}, fmt.Errorf("stat %s: %w", key, s.classify(err))
	}
	return store.Info{Key: key, Size: info.Size, ModTime: info.LastModified, Version: info.ETag}, nil
}

// Delete implements store.Store. S3 deletes succeed on missing keys, so
// a stat comes first to keep the ErrNotFound contract.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.Stat(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.cfg.Prefix+key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", key, s.classify(err))
	}
	return nil
}

// List implements store.Store; minio-go follows the continuation tokens
// (1000 keys a page) and S3 returns keys in byte order.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if err := store.ValidPrefix(prefix); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix + prefix, Recursive: true})
	for o := range ch {
		if o.Err != nil {
			return fmt.Errorf("list %q: %w", prefix, s.classify(o.Err))
		}
		key := strings.TrimPrefix(o.Key, s.cfg.Prefix)
		if store.ValidKey(key) != nil {
			continue // probes, foreign objects
		}
		if err := fn(store.Info{Key: key, Size: o.Size, ModTime: o.LastModified, Version: o.ETag}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// ListDirs implements store.DirLister with S3's common prefixes.
func (s *Store) ListDirs(ctx context.Context, prefix string) ([]string, error) {
	if err := store.ValidPrefix(prefix); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out []string
	for o := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix + prefix, Recursive: false}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, s.classify(o.Err))
		}
		name := strings.TrimSuffix(strings.TrimPrefix(o.Key, s.cfg.Prefix+prefix), "/")
		if name != "" && store.ValidComponent(name) == nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, ctx.Err()
}

// classify maps S3 error codes onto store's sentinels. Mistakes a retry
// cannot fix (TLS against a plain-HTTP endpoint, a missing bucket, bad
// credentials) are permanent and say what to change.
func (s *Store) classify(err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return fmt.Errorf("%w: %s answers plain HTTP, but the URL asks for TLS: add tls=false to the s3:// URL (or give the endpoint a certificate)", errkind.ErrConfig, s.cfg.Endpoint)
	}
	if strings.Contains(err.Error(), "first record does not look like a TLS handshake") || strings.Contains(err.Error(), "tls: ") && strings.Contains(err.Error(), "certificate") {
		return fmt.Errorf("%w: TLS to %s: %v (give the CA with ca=FILE in the URL)", errkind.ErrConfig, s.cfg.Endpoint, err)
	}
	resp := minio.ToErrorResponse(err)
	var sentinel error
	switch resp.Code {
	case "NoSuchKey", "NotFound":
		sentinel = errkind.ErrNotFound
	case "PreconditionFailed":
		sentinel = errkind.ErrExists
	case "AccessDenied", "AllAccessDisabled":
		sentinel = errkind.ErrForbidden
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken":
		sentinel = errkind.ErrUnauthorized
	case "NoSuchBucket":
		return fmt.Errorf("%w: bucket %s does not exist at %s", errkind.ErrConfig, s.cfg.Bucket, s.cfg.Endpoint)
	case "InvalidBucketName":
		sentinel = errkind.ErrInvalid
	case "XMinioStorageFull", "QuotaExceeded", "XMinioAdminBucketQuotaExceeded":
		sentinel = errkind.ErrNoSpace
	case "SlowDownWrite":
		// MinIO's answer when too few of its drives accept writes (its
		// write quorum is lost): reads still work.
		return fmt.Errorf("%w: %s answers %d %s: %v (too few of its drives accept writes?)", errkind.ErrReadOnly, s.cfg.Endpoint, resp.StatusCode, resp.Code, err)
	}
	if sentinel == nil && resp.StatusCode == http.StatusNotFound && resp.Code == "" {
		sentinel = errkind.ErrNotFound
	}
	if sentinel == nil {
		return err
	}
	return fmt.Errorf("%w: %v", sentinel, err)
}
