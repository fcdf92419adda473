package testenv

import (
	"os"
	"testing"
	"time"

	"github.com/walstore/walstore/internal/certs"
)

// CA is a certificate authority made for one test (internal/certs, as
// walstored tls makes one).
type CA struct {
	CertFile string
	ca       *certs.CA
	dir      string
}

// NewCA makes a CA in a fresh directory.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := certs.NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := &CA{ca: ca, dir: Dir(t)}
	c.CertFile = c.dir + "/" + name + "-ca.pem"
	if err := certs.WritePEM(c.CertFile, "CERTIFICATE", ca.DER); err != nil {
		t.Fatal(err)
	}
	return c
}

// Issue signs a certificate for name (a server for 127.0.0.1 and
// localhost, or a client) and returns its certificate and key files.
func (c *CA) Issue(t testing.TB, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	cert, key, err := c.ca.Issue(name, []string{"127.0.0.1", "localhost"}, server, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(c.dir + "/" + name + ".pem")
	os.Remove(c.dir + "/" + name + "-key.pem")
	certFile, keyFile, err = certs.WritePair(c.dir, name, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
