package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/internal/certs"
	"github.com/walstore/walstore/internal/cli"
)

// bindTLS is "walstored tls": a private CA (made once, kept in --dir),
// walstored's server certificate for the names clients connect to, and
// client certificates (for --tls-client-ca).
func bindTLS(fs *pflag.FlagSet, e env) func(context.Context) error {
	dir := fs.String("dir", "/etc/walstore/tls", "directory of the CA (ca.pem, ca-key.pem: made on first use) and of the certificates made")
	var hosts, clients []string
	fs.StringArrayVar(&hosts, "host", nil, "a name or IP address clients reach walstored by (repeat for each): makes server.pem and server-key.pem")
	fs.StringArrayVar(&clients, "client", nil, "a client certificate to make, NAME.pem and NAME-key.pem (repeat for each)")
	days := fs.Int("days", 825, "how long the certificates made are valid (the CA: ten years)")
	return func(ctx context.Context) error {
		if len(hosts) == 0 && len(clients) == 0 {
			return fmt.Errorf("%w: give --host NAME (walstored's certificate) and/or --client NAME", cli.ErrUsage)
		}
		if *days < 1 {
			return fmt.Errorf("%w: --days must be positive", cli.ErrUsage)
		}
		if err := os.MkdirAll(*dir, 0o700); err != nil {
			return fmt.Errorf("%w: --dir: %v", errkind.ErrConfig, err)
		}
		caCert, caKey := filepath.Join(*dir, "ca.pem"), filepath.Join(*dir, "ca-key.pem")
		ca, err := certs.LoadCA(caCert, caKey)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if ca, err = certs.NewCA("walstore CA", 10*365*24*time.Hour); err != nil {
				return err
			}
			if err := certs.WritePEM(caCert, "CERTIFICATE", ca.DER); err != nil {
				return err
			}
			kder, err := ca.KeyDER()
			if err != nil {
				return err
			}
			if err := certs.WritePEM(caKey, "EC PRIVATE KEY", kder); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "made a CA: %s (give it to every client: cacert = %s), its key %s (keep it on this host only)\n", caCert, caCert, caKey)
		case err != nil:
			return fmt.Errorf("%w: the CA in %s: %v", errkind.ErrConfig, *dir, err)
		}
		d := time.Duration(*days) * 24 * time.Hour
		if len(hosts) > 0 {
			c, k, err := ca.Issue(hosts[0], hosts, true, d)
			if err != nil {
				return err
			}
			cf, kf, err := certs.WritePair(*dir, "server", c, k)
			if err != nil {
				return fmt.Errorf("%w: %v (remove the old pair to make a new one)", errkind.ErrConfig, err)
			}
			fmt.Fprintf(e.stdout, "walstored's certificate for %v: walstored serve --tls-cert %s --tls-key %s\n", hosts, cf, kf)
		}
		for _, name := range clients {
			c, k, err := ca.Issue(name, nil, false, d)
			if err != nil {
				return err
			}
			cf, kf, err := certs.WritePair(*dir, name, c, k)
			if err != nil {
				return fmt.Errorf("%w: %v", errkind.ErrConfig, err)
			}
			fmt.Fprintf(e.stdout, "client certificate %s: client-cert = %s, client-key = %s (walstored serve --tls-client-ca %s)\n", name, cf, kf, caCert)
		}
		return nil
	}
}
