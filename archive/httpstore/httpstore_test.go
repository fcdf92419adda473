package httpstore_test

import (
	"net/http/httptest"
	"testing"

	"github.com/walstore/walstore/archive"
	"github.com/walstore/walstore/archive/filestore"
	"github.com/walstore/walstore/archive/httpstore"
	"github.com/walstore/walstore/archive/storetest"
	"github.com/walstore/walstore/server"
)

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
