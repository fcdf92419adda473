package memstore_test

import (
	"testing"

	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/memstore"
	"github.com/walstore/walstore/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return memstore.New() }, storetest.Options{})
}
