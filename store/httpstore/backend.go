package httpstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
	"github.com/walstore/walstore/store/failover"
)

// Backend is walstored in the registry (store/storeurl): http://host:port,
// https://host:port, http+unix:///socket (a drill's door), or several
// walstored URLs separated by commas, one repository through several
// instances: calls go to the one that answered last, and to the next at
// once when it cannot be reached (store/failover).
var Backend = store.Backend{
	Name:    "walstored",
	Schemes: []string{"http", "https", "http+unix"},
	Example: "https://storage:7480",
	Served:  true,
	Check: func(rawURL string) error {
		if urls, ok := List(rawURL); ok {
			if len(urls) < 2 {
				return fmt.Errorf("%w: repository list %q: give two or more walstored URLs separated by commas", errkind.ErrInvalid, rawURL)
			}
			for _, u := range urls {
				if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
					return fmt.Errorf("%w: repository list %q: %q: a list names walstored instances (http:// or https://) in front of one store", errkind.ErrInvalid, rawURL, u)
				}
				if _, err := New(u, Options{}); err != nil {
					return err
				}
			}
			return nil
		}
		_, err := New(rawURL, Options{})
		return err
	},
	Open: func(_ context.Context, rawURL string, a store.Access) (store.Store, error) {
		opt := Options{Token: a.Token, CACertFile: a.CACert, ClientCertFile: a.ClientCert, ClientKeyFile: a.ClientKey, NoCache: a.NoCache}
		urls, ok := List(rawURL)
		if !ok {
			return New(rawURL, opt)
		}
		if opt.DialTimeout == 0 {
			opt.DialTimeout = ListDialTimeout
		}
		var members []store.Store
		for _, u := range urls {
			m, err := New(u, opt)
			if err != nil {
				return nil, err
			}
			members = append(members, m)
		}
		f, err := failover.New(members, a.First, func(err error) bool { return errors.Is(err, ErrUnreachable) })
		if err != nil {
			return nil, err
		}
		f.OnSwitch = a.OnSwitch
		return f, nil
	},
}

// ListDialTimeout is how long a client waits for a connection to one
// walstored of a list before it tries the next.
const ListDialTimeout = time.Second

// List splits a comma-separated list of walstored URLs; false when
// rawURL is one URL.
func List(rawURL string) ([]string, bool) {
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
