package storeurl

import (
	"fmt"

	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/cachestore"
	"github.com/walstore/walstore/store/multistore"
	"github.com/walstore/walstore/store/retrystore"
)

// Layers are the wrappers a process puts around the stores it opened.
// Compose applies them, always in this order, for the clients and for
// walstored alike:
//
//	several stores kept in step (multistore, Multi's quorum and checks)
//	  → a cache of what was read and written (cachestore; walstored)
//	    → retries of what fails for a passing reason (retrystore; clients)
type Layers struct {
	// Multi tunes the multistore made when there is more than one member.
	Multi multistore.Options
	// CacheBytes > 0 adds a cache of that size, keeping the keys
	// CacheAdmit accepts (nil: every key).
	CacheBytes int64
	CacheAdmit func(key string) bool
	// Retry, when set, retries every call (store.Load included).
	Retry *retrystore.Options
}

// Compose puts the layers around members and returns the store to use,
// and the multistore when there are several members (for sync and
// health).
func Compose(members []multistore.Member, l Layers) (store.Store, *multistore.Store, error) {
	var s store.Store
	var ms *multistore.Store
	switch len(members) {
	case 0:
		return nil, nil, fmt.Errorf("no store to compose")
	case 1:
		if l.Multi.Quorum > 1 {
			return nil, nil, fmt.Errorf("a quorum of %d with one store", l.Multi.Quorum)
		}
		s = members[0].Store
	default:
		var err error
		if ms, err = multistore.New(members, l.Multi); err != nil {
			return nil, nil, err
		}
		s = ms
	}
	if l.CacheBytes > 0 {
		s = cachestore.New(s, cachestore.Options{MaxBytes: l.CacheBytes, Admit: l.CacheAdmit})
	}
	if l.Retry != nil {
		s = retrystore.New(s, *l.Retry)
	}
	return s, ms, nil
}
