package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// MaxCAFileBytes bounds a CA bundle read by LoadCAPool.
const MaxCAFileBytes = 4 << 20

// LoadCAPool reads a PEM bundle of CA certificates (--cacert,
// --join-cacert) into a pool. A file that holds no certificate is an
// error: a mistyped path to, say, a key file would otherwise trust nothing
// and fail later with a less helpful TLS error.
func LoadCAPool(file string) (*x509.CertPool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxCAFileBytes {
		return nil, fmt.Errorf("%s is %d bytes; a CA bundle is at most %d", file, st.Size(), MaxCAFileBytes)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New(file + " holds no PEM certificate")
	}
	return pool, nil
}
