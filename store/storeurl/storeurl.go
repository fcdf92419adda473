// Package storeurl opens the store a repository URL names:
//
//	http://host:port, https://host:port   a walstored (httpstore)
//	file:///path, file://./relative        a directory (filestore)
//	s3://bucket/prefix?endpoint=...        S3 or MinIO (s3store)
//
// It is the only package that knows every backend, so commands stay free
// of backend details.
package storeurl

import (
	"context"
	"fmt"
	"strings"

	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/store/s3store"
)

// Options holds credentials and TLS settings; each backend uses its part.
type Options struct {
	HTTP httpstore.Options
	S3   s3store.Options
	File filestore.Options
}

// Open returns the store for rawURL.
func Open(ctx context.Context, rawURL string, opt Options) (store.Store, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, badURL(rawURL)
	}
	switch scheme {
	case "http", "https":
		return httpstore.New(rawURL, opt.HTTP)
	case "file":
		dir, err := FilePath(rest)
		if err != nil {
			return nil, fmt.Errorf("%w: repository URL %q: %v", store.ErrInvalid, rawURL, err)
		}
		return filestore.Open(dir, opt.File)
	case "s3":
		return s3store.Open(ctx, rawURL, opt.S3)
	}
	return nil, badURL(rawURL)
}

// Check parses rawURL without connecting to anything, so that a mistyped
// repository is reported before any work is done.
func Check(rawURL string) error {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return badURL(rawURL)
	}
	switch scheme {
	case "http", "https":
		_, err := httpstore.New(rawURL, httpstore.Options{})
		return err
	case "file":
		if _, err := FilePath(rest); err != nil {
			return fmt.Errorf("%w: repository URL %q: %v", store.ErrInvalid, rawURL, err)
		}
		return nil
	case "s3":
		_, err := s3store.ParseURL(rawURL)
		return err
	}
	return badURL(rawURL)
}

// FilePath turns the part of a file:// URL after the scheme into a path:
// "/abs/path" (file:///abs/path), "localhost/abs/path", or "./rel/path"
// (file://./rel/path, relative to the working directory).
func FilePath(rest string) (string, error) {
	if strings.ContainsAny(rest, "?#") {
		return "", fmt.Errorf("no query or fragment expected")
	}
	switch {
	case strings.HasPrefix(rest, "/"):
		return rest, nil
	case strings.HasPrefix(rest, "localhost/"):
		return strings.TrimPrefix(rest, "localhost"), nil
	case rest == "." || strings.HasPrefix(rest, "./"):
		return rest, nil
	}
	return "", fmt.Errorf("want file:///absolute/path or file://./relative/path")
}

func badURL(raw string) error {
	return fmt.Errorf("%w: repository URL %q: want http(s)://host:port, file:///path or s3://bucket/prefix?endpoint=host:port", store.ErrInvalid, raw)
}
