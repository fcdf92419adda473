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
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/failover"
	"github.com/walstore/walstore/store/filestore"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/store/s3store"
)

// Options holds credentials and TLS settings; each backend uses its part.
type Options struct {
	HTTP httpstore.Options
	S3   s3store.Options
	File filestore.Options
	// For a list of walstored URLs: the one to try first (the one that
	// answered last time), and who to tell when another one answers.
	First    int
	OnSwitch func(i int)
}

// ListDialTimeout is how long a client waits for a connection to one
// walstored of a list before it tries the next.
const ListDialTimeout = time.Second

// Open returns the store for rawURL. Several walstored URLs separated by
// commas are one repository through several instances: calls go to the
// one that answered last, and to the next at once when it cannot be
// reached (store/failover).
func Open(ctx context.Context, rawURL string, opt Options) (store.Store, error) {
	if urls, ok := list(rawURL); ok {
		var members []store.Store
		ho := opt.HTTP
		if ho.DialTimeout == 0 {
			ho.DialTimeout = ListDialTimeout
		}
		for _, u := range urls {
			m, err := httpstore.New(u, ho)
			if err != nil {
				return nil, err
			}
			members = append(members, m)
		}
		f, err := failover.New(members, opt.First, func(err error) bool { return errors.Is(err, httpstore.ErrUnreachable) })
		if err != nil {
			return nil, err
		}
		f.OnSwitch = opt.OnSwitch
		return f, nil
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, badURL(rawURL)
	}
	switch scheme {
	case "http", "https", "http+unix":
		return httpstore.New(rawURL, opt.HTTP)
	case "file":
		dir, err := FilePath(rest)
		if err != nil {
			return nil, fmt.Errorf("%w: repository URL %q: %v", errkind.ErrInvalid, rawURL, err)
		}
		return filestore.Open(dir, opt.File)
	case "s3":
		return s3store.Open(ctx, rawURL, opt.S3)
	}
	return nil, badURL(rawURL)
}

// list splits a comma-separated list of repository URLs.
func list(rawURL string) ([]string, bool) {
	if !strings.Contains(rawURL, ",") {
		return nil, false
	}
	var out []string
	for _, u := range strings.Split(rawURL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out, true
}

// Check parses rawURL without connecting to anything, so that a mistyped
// repository is reported before any work is done.
func Check(rawURL string) error {
	if urls, ok := list(rawURL); ok {
		if len(urls) < 2 {
			return fmt.Errorf("%w: repository list %q: give two or more walstored URLs separated by commas", errkind.ErrInvalid, rawURL)
		}
		for _, u := range urls {
			if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				return fmt.Errorf("%w: repository list %q: %q: a list names walstored instances (http:// or https://) in front of one store", errkind.ErrInvalid, rawURL, u)
			}
			if err := Check(u); err != nil {
				return err
			}
		}
		return nil
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return badURL(rawURL)
	}
	switch scheme {
	case "http", "https", "http+unix":
		_, err := httpstore.New(rawURL, httpstore.Options{})
		return err
	case "file":
		if _, err := FilePath(rest); err != nil {
			return fmt.Errorf("%w: repository URL %q: %v", errkind.ErrInvalid, rawURL, err)
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
	return fmt.Errorf("%w: repository URL %q: want http(s)://host:port, file:///path or s3://bucket/prefix?endpoint=host:port", errkind.ErrInvalid, raw)
}
