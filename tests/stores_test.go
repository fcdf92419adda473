package tests

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/walstore/walstore/archive/archivetest"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/server"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/store/s3store"
	"github.com/walstore/walstore/store/storetest"
	"github.com/walstore/walstore/store/storeurl"
	"github.com/walstore/walstore/tests/testenv"
)

// The real stores behind the tests, opened by URL through the backend
// registry as the commands open them: a directory, and a bucket prefix on
// a real MinIO (credentials from the environment, as walpush reads them).
func realStores(t *testing.T) map[string]func(t *testing.T) store.Store {
	m := testenv.SharedMinIO(t)
	open := func(t *testing.T, u string, env []string) store.Store {
		a := store.Access{Getenv: func(k string) string {
			for _, kv := range env {
				if v, ok := strings.CutPrefix(kv, k+"="); ok {
					return v
				}
			}
			return ""
		}}
		s, err := storeurl.Open(context.Background(), u, a)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return map[string]func(t *testing.T) store.Store{
		"file": func(t *testing.T) store.Store {
			u := "file://" + t.TempDir()
			if err := storeurl.Create(context.Background(), u); err != nil {
				t.Fatal(err)
			}
			return open(t, u, nil)
		},
		"s3": func(t *testing.T) store.Store { return open(t, m.URL("conformance"), m.Env()) },
	}
}

// through serves s with walstored in this process and returns its client.
func through(t *testing.T, s store.Store, passthrough bool) store.Store {
	ts := httptest.NewServer(server.New(server.Config{Store: s, Passthrough: passthrough}))
	t.Cleanup(ts.Close)
	hs, err := httpstore.New(ts.URL, httpstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// The byte-level checker against every real store, and HTTP over each.
func TestStoresConformance(t *testing.T) {
	t.Parallel()
	for name, newStore := range realStores(t) {
		t.Run(name, func(t *testing.T) { storetest.Run(t, newStore, storetest.Options{}) })
		t.Run("http-over-"+name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store { return through(t, newStore(t), true) }, storetest.Options{ListObjects: 1050, LargeObject: 24 << 20})
		})
	}
	// Cancelled multipart uploads were aborted: no parts are left behind.
	m := testenv.SharedMinIO(t)
	for u := range m.Client().ListIncompleteUploads(context.Background(), m.Bucket, "conformance/", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		t.Errorf("incomplete multipart upload left behind: %s", u.Key)
	}
}

// The tier-2 suite against every real store, directly and through
// walstored's door.
func TestRepositoryConformance(t *testing.T) {
	t.Parallel()
	for name, newStore := range realStores(t) {
		t.Run(name, func(t *testing.T) { archivetest.Run(t, newStore) })
		t.Run("walstored-over-"+name, func(t *testing.T) {
			archivetest.Run(t, func(t *testing.T) store.Store { return through(t, newStore(t), false) })
		})
	}
}

// Mistakes with an S3 store are permanent and say what to fix.
func TestS3Mistakes(t *testing.T) {
	t.Parallel()
	m := testenv.SharedMinIO(t)
	ctx := context.Background()
	u := "s3://no-such-bucket/x?endpoint=" + m.Endpoint + "&tls=false"
	s, err := s3store.Open(ctx, u, s3store.Options{AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err == nil {
		_, err = s.Stat(ctx, "a/b")
	}
	if !errkind.Permanent(err) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing bucket: %v, want a permanent error saying so", err)
	}
	if _, err := s3store.Open(ctx, m.URL("x"), s3store.Options{AccessKey: "nobody", SecretKey: "wrong-secret"}); !errkind.Permanent(err) {
		t.Fatalf("wrong credentials: %v, want a permanent error", err)
	}
	tlsURL := strings.Replace(m.URL("x"), "tls=false", "tls=true", 1)
	if _, err := s3store.Open(ctx, tlsURL, s3store.Options{AccessKey: m.AccessKey, SecretKey: m.SecretKey}); !errkind.Permanent(err) || !strings.Contains(err.Error(), "tls=false") {
		t.Fatalf("TLS against plain HTTP: %v, want a permanent error naming tls=false", err)
	}
}
