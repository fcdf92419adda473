package archive_test

import (
	"net/http/httptest"
	"testing"

	"github.com/walstore/walstore/archive/archivetest"
	"github.com/walstore/walstore/server"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/store/memstore"
)

// The tier-2 suite on the in-memory store, directly and through
// walstored's door (over real stores in tests/stores_test.go).
func TestSuiteInMemory(t *testing.T) {
	archivetest.Run(t, func(*testing.T) store.Store { return memstore.New() })
}

func TestSuiteThroughWalstored(t *testing.T) {
	archivetest.Run(t, func(t *testing.T) store.Store {
		ts := httptest.NewServer(server.New(server.Config{Store: memstore.New()}))
		t.Cleanup(ts.Close)
		hs, err := httpstore.New(ts.URL, httpstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return hs
	})
}
