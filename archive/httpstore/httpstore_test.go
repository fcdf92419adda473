package httpstore_test

import (
	"context"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/filestore"
	"github.com/walstore/walstore/archive/httpstore"
	"github.com/walstore/walstore/archive/s3store"
	"github.com/walstore/walstore/archive/storetest"
	"github.com/walstore/walstore/internal/testenv"
	"github.com/walstore/walstore/server"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// The HTTP client in front of walstored in front of a file store passes
// the same suite as the file store itself.
func TestConformanceOverFileStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) archive.Store {
		fs, err := filestore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(server.New(server.Config{Store: fs}))
		t.Cleanup(ts.Close)
		s, err := httpstore.New(ts.URL, httpstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storetest.Options{})
}

// And the same in front of an S3 store on a real MinIO.
func TestConformanceOverS3(t *testing.T) {
	m := testenv.SharedMinIO(t)
	storetest.Run(t, func(t *testing.T) archive.Store {
		s3, err := s3store.Open(context.Background(), m.URL("via-walstored"), s3store.Options{AccessKey: m.AccessKey, SecretKey: m.SecretKey})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(server.New(server.Config{Store: s3}))
		t.Cleanup(ts.Close)
		s, err := httpstore.New(ts.URL, httpstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storetest.Options{})
}
