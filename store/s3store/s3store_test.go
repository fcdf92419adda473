package s3store_test

import (
	"testing"

	"github.com/walstore/walstore/store/s3store"
)

// The store itself is proven against a real MinIO in tests/stores_test.go.
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
