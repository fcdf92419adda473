// Package s3store is an archive.Store in an S3-compatible bucket (MinIO on
// premises, AWS S3), built on minio-go.
//
// Write-once comes from a conditional PUT (If-None-Match: *): the store
// answers 412 when the name exists, atomically, however many walstored
// instances or direct clients write at once. Open checks that the endpoint
// honours the condition and refuses to run if it does not, unless the
// operator opted in to the weaker stat-then-put mode (conditional=off),
// which has a race documented in the README.
//
// No call can hang: every request has a deadline (Options.Timeout plus a
// size allowance), connections have dial and header timeouts, and minio-go
// retries with bounded backoff inside that deadline. Large objects go up in
// multipart uploads that minio-go aborts on failure, so nothing is left
// half-visible.
package s3store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/internal/tlsconf"
)

// Options are what the URL does not carry.
type Options struct {
	// Static credentials (from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
	// read by the caller). When empty, ~/.aws/credentials and IAM roles
	// are tried.
	AccessKey, SecretKey, SessionToken string
	// ReadOnly skips the conditional-write check (walfetch never writes).
	ReadOnly bool
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
		return Config{}, fmt.Errorf("%w: S3 URL %q: %s", archive.ErrInvalid, raw, fmt.Sprintf(format, args...))
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
		if err := archive.ValidKey(c.Prefix); err != nil {
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
			n, err := parseSize(v)
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

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, suf := range []struct {
		s string
		m int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(s, suf.s) {
			s, mult = strings.TrimSuffix(s, suf.s), suf.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

// Store is an archive.Store in a bucket.
type Store struct {
	cfg    Config
	client *minio.Client
}

// Open connects to the bucket named by rawURL, checks that it exists and,
// unless opt.ReadOnly or conditional=off, that the endpoint refuses a
// second conditional PUT of one name.
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
		return nil, fmt.Errorf("%w: S3 endpoint %s: %v", archive.ErrInvalid, cfg.Endpoint, err)
	}
	s := &Store{cfg: cfg, client: client}
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	ok, err := client.BucketExists(cctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Describe(), classify(err))
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s: bucket %s does not exist", archive.ErrInvalid, s.Describe(), cfg.Bucket)
	}
	if cfg.Conditional && !opt.ReadOnly {
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
			return nil, fmt.Errorf("%w: S3 endpoint: %v", archive.ErrInvalid, err)
		}
		tr.TLSClientConfig = tc
	}
	return tr, nil
}

// checkConditional writes a probe object twice with If-None-Match: * and
// requires the second write to be refused.
func (s *Store) checkConditional(ctx context.Context) error {
	var b [8]byte
	rand.Read(b[:])
	probe := s.cfg.Prefix + ".walstore-probe-" + hex.EncodeToString(b[:])
	defer s.client.RemoveObject(context.WithoutCancel(ctx), s.cfg.Bucket, probe, minio.RemoveObjectOptions{})
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	opts.SetMatchETagExcept("*")
	for i := range 2 {
		_, err := s.client.PutObject(ctx, s.cfg.Bucket, probe, strings.NewReader("probe"), 5, opts)
		switch {
		case i == 0 && err != nil:
			return fmt.Errorf("%s: conditional-write probe: %w", s.Describe(), classify(err))
		case i == 1 && err == nil:
			return fmt.Errorf("%w: %s does not honour conditional writes (If-None-Match: *), so two writers could overwrite each other's WAL; "+
				"use an endpoint that does (MinIO, AWS S3) or, knowingly, add conditional=off to the URL (see README)", archive.ErrInvalid, s.Describe())
		case i == 1 && !errors.Is(classify(err), archive.ErrExists):
			return fmt.Errorf("%s: conditional-write probe: %w", s.Describe(), classify(err))
		}
	}
	return nil
}

// Describe implements archive.Describer.
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

// Put implements archive.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := archive.ValidKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("%w: put %s: size %d", archive.ErrInvalid, key, size)
	}
	ctx, cancel := s.deadline(ctx, size)
	defer cancel()
	obj := s.cfg.Prefix + key
	if !s.cfg.Conditional {
		// Weak mode: a second writer between this stat and the put can
		// replace the object. Only for endpoints without conditional writes.
		if _, err := s.Stat(ctx, key); err == nil {
			return fmt.Errorf("put %s: %w", key, archive.ErrExists)
		} else if !errors.Is(err, archive.ErrNotFound) {
			return err
		}
	}
	opts := minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    s.cfg.PartSize,
		NumThreads:  4,
	}
	if s.cfg.Conditional {
		opts.SetMatchETagExcept("*")
	}
	info, err := s.client.PutObject(ctx, s.cfg.Bucket, obj, r, size, opts)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, classify(err))
	}
	if info.Size != size {
		return fmt.Errorf("put %s: store acknowledged %d bytes of %d", key, info.Size, size)
	}
	return nil
}

// object is a Get result: the body, its size, and the deadline to release.
type object struct {
	*minio.Object
	size   int64
	cancel context.CancelFunc
}

func (o *object) Size() int64 { return o.size }

func (o *object) Close() error {
	err := o.Object.Close()
	o.cancel()
	return err
}

// Get implements archive.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := archive.ValidKey(key); err != nil {
		return nil, err
	}
	sctx, scancel := context.WithTimeout(ctx, s.cfg.Timeout)
	info, err := s.client.StatObject(sctx, s.cfg.Bucket, s.cfg.Prefix+key, minio.StatObjectOptions{})
	scancel()
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, classify(err))
	}
	gctx, cancel := s.deadline(ctx, info.Size)
	opts := minio.GetObjectOptions{}
	// Pin the version we sized: a concurrent delete and re-put must not
	// hand us a different object under a stale size.
	if err := opts.SetMatchETag(info.ETag); err != nil {
		cancel()
		return nil, err
	}
	o, err := s.client.GetObject(gctx, s.cfg.Bucket, s.cfg.Prefix+key, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("get %s: %w", key, classify(err))
	}
	return &object{Object: o, size: info.Size, cancel: cancel}, nil
}

// Stat implements archive.Store.
func (s *Store) Stat(ctx context.Context, key string) (archive.Info, error) {
	if err := archive.ValidKey(key); err != nil {
		return archive.Info{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, s.cfg.Prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return archive.Info{}, fmt.Errorf("stat %s: %w", key, classify(err))
	}
	return archive.Info{Key: key, Size: info.Size, ModTime: info.LastModified}, nil
}

// Delete implements archive.Store. S3 deletes succeed on missing keys, so
// a stat comes first to keep the ErrNotFound contract.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.Stat(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.cfg.Prefix+key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", key, classify(err))
	}
	return nil
}

// List implements archive.Store; minio-go follows the continuation tokens
// (1000 keys a page) and S3 returns keys in byte order.
func (s *Store) List(ctx context.Context, prefix string, fn func(archive.Info) error) error {
	if err := archive.ValidPrefix(prefix); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix + prefix, Recursive: true})
	for o := range ch {
		if o.Err != nil {
			return fmt.Errorf("list %q: %w", prefix, classify(o.Err))
		}
		key := strings.TrimPrefix(o.Key, s.cfg.Prefix)
		if archive.ValidKey(key) != nil {
			continue // probes, foreign objects
		}
		if err := fn(archive.Info{Key: key, Size: o.Size, ModTime: o.LastModified}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// classify maps S3 error codes onto archive's sentinels.
func classify(err error) error {
	resp := minio.ToErrorResponse(err)
	var sentinel error
	switch resp.Code {
	case "NoSuchKey", "NotFound":
		sentinel = archive.ErrNotFound
	case "PreconditionFailed":
		sentinel = archive.ErrExists
	case "AccessDenied", "AllAccessDisabled":
		sentinel = archive.ErrForbidden
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken":
		sentinel = archive.ErrUnauthorized
	case "NoSuchBucket", "InvalidBucketName":
		sentinel = archive.ErrInvalid
	case "XMinioStorageFull", "QuotaExceeded", "XMinioAdminBucketQuotaExceeded":
		sentinel = archive.ErrNoSpace
	}
	if sentinel == nil && resp.StatusCode == http.StatusNotFound && resp.Code == "" {
		sentinel = archive.ErrNotFound
	}
	if sentinel == nil {
		return err
	}
	return fmt.Errorf("%w: %v", sentinel, err)
}
