package httpstore_test

import (
	"net/http/httptest"
	"testing"

	"github.com/walstore/walstore/server"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/httpstore"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/store/storetest"
)

// The HTTP client in front of walstored (as a plain transport of bytes)
// passes the same checker as the store behind it. The same runs over a
// file store and over MinIO in tests/stores_test.go.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		ts := httptest.NewServer(server.New(server.Config{Store: memstore.New(), Passthrough: true}))
		t.Cleanup(ts.Close)
		s, err := httpstore.New(ts.URL, httpstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storetest.Options{LargeObject: 8 << 20})
}
