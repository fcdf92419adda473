package s3store_test

import (
	"context"
	"os"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/s3store"
	"github.com/walstore/walstore/archive/storetest"
	"github.com/walstore/walstore/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func open(t *testing.T, m *testenv.MinIO, prefix string) *s3store.Store {
	t.Helper()
	s, err := s3store.Open(context.Background(), m.URL(prefix), s3store.Options{AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The S3 store on a real MinIO passes the same suite as every store.
func TestConformance(t *testing.T) {
	m := testenv.SharedMinIO(t)
	storetest.Run(t, func(t *testing.T) archive.Store { return open(t, m, "conformance") }, storetest.Options{})
	// Cancelled multipart uploads were aborted: no parts are left behind.
	ctx := context.Background()
	for u := range m.Client().ListIncompleteUploads(ctx, m.Bucket, "conformance/", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		t.Errorf("incomplete multipart upload left behind: %s", u.Key)
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"s3://bucket", true},
		{"s3://bucket/pre/fix?endpoint=127.0.0.1:9000&tls=false&region=eu-west-1", true},
		{"s3://bucket/p?timeout=5s&retries=3&conditional=off&part-size=32MiB", true},
		{"s3:///nobucket", false},
		{"s3://user:pw@bucket/", false},
		{"s3://bucket/p?tls=maybe", false},
		{"s3://bucket/p?timeout=-1s", false},
		{"s3://bucket/p?conditional=sometimes", false},
		{"s3://bucket/p?bogus=1", false},
		{"s3://bucket/../x", false},
		{"http://bucket/", false},
	} {
		_, err := s3store.ParseURL(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("ParseURL(%q): err=%v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

func TestMissingBucketIsAClearError(t *testing.T) {
	m := testenv.SharedMinIO(t)
	u := "s3://no-such-bucket/x?endpoint=" + m.Endpoint + "&tls=false"
	_, err := s3store.Open(context.Background(), u, s3store.Options{AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err == nil {
		t.Fatal("open of a missing bucket succeeded")
	}
	t.Log(err)
}

func TestWrongCredentials(t *testing.T) {
	m := testenv.SharedMinIO(t)
	_, err := s3store.Open(context.Background(), m.URL("x"), s3store.Options{AccessKey: "nobody", SecretKey: "wrong-secret"})
	if !archive.Permanent(err) {
		t.Fatalf("wrong credentials: %v, want a permanent error", err)
	}
	_ = minio.ErrorResponse{}
}
