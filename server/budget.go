package server

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/walstore/walstore/server/door"
)

// bodyDeadline cuts off a sender slower than the minimum rate: the whole
// body must arrive within 10 s plus its size at that rate.
func (s *Server) bodyDeadline(w http.ResponseWriter, size int64) {
	d := 10*time.Second + time.Duration(size/s.cfg.MinBodyRate)*time.Second
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
}

// received counts the bytes actually read from a request body, and
// marks a failure to read it (the client went away, or was too slow) as
// the client's (door.Aborted), not the store's.
type received struct {
	r io.Reader
	n int64
}

func (c *received) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			err = &door.Aborted{Err: err}
		}
	}
	return n, err
}
