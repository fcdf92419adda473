package server

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"

	"github.com/walstore/walstore/base/tlsconf"
)

// TLSFiles serves a certificate that Reload can replace while running
// (SIGHUP after a renewal), and optionally requires client certificates.
type TLSFiles struct {
	certFile, keyFile, clientCAFile string
	cert                            atomic.Pointer[tls.Certificate]
}

// NewTLS loads the certificate and key; clientCA, when set, is the CA
// client certificates must chain to (they are then required).
func NewTLS(certFile, keyFile, clientCA string) (*TLSFiles, error) {
	t := &TLSFiles{certFile: certFile, keyFile: keyFile, clientCAFile: clientCA}
	return t, t.Reload()
}

// Reload re-reads the certificate and key; on error the old pair stays.
func (t *TLSFiles) Reload() error {
	c, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	t.cert.Store(&c)
	return nil
}

// Config is the server's TLS configuration.
func (t *TLSFiles) Config() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return t.cert.Load(), nil
		},
	}
	if t.clientCAFile != "" {
		pool, err := tlsconf.LoadPool(t.clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
