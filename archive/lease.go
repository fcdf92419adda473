package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/walstore/walstore/archive/envelope"
	"github.com/walstore/walstore/base/errkind"
	"github.com/walstore/walstore/store"
)

// A lease keeps a job from running twice at once on one repository
// (retention of an archive, a sync of stores), from any host and through
// any walstored: a write-once object naming its holder and when it
// expires. Taking it is a put-if-absent; an expired lease is removed and
// taken again; releasing it deletes it if it is still the holder's. The
// expiry is the job's own deadline, so a holder that died blocks the job
// no longer than it could have run; one that died on the host that takes
// the lease next (its process is gone) blocks it not at all.
type Lease struct {
	Job      string    `json:"job"`
	Holder   string    `json:"holder"`
	Acquired time.Time `json:"acquired"`
	Expires  time.Time `json:"expires"`

	s   store.Store
	key string
}

// ErrBusy: another run of the job holds the lease.
var ErrBusy = fmt.Errorf("%w: already running", errkind.ErrConflict)

// TakeLease takes the lease at key for job until ttl from now.
func TakeLease(ctx context.Context, s store.Store, key, job string, ttl time.Duration) (*Lease, error) {
	host, _ := os.Hostname()
	l := &Lease{Job: job, Holder: fmt.Sprintf("%s pid %d", host, os.Getpid()), Acquired: time.Now().UTC().Truncate(time.Millisecond), s: s, key: key}
	l.Expires = l.Acquired.Add(ttl)
	b, _ := json.Marshal(l)
	obj, err := envelope.NewEncoder().EncodeBytes(b, key)
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 2; attempt++ {
		err = s.Put(ctx, key, store.Bytes(obj.Bytes()))
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, errkind.ErrExists) {
			return nil, fmt.Errorf("take the lease of %s: %w", job, err)
		}
		other, rerr := readLease(ctx, s, key)
		if rerr != nil {
			return nil, fmt.Errorf("read the lease of %s: %w", job, rerr)
		}
		if time.Now().Before(other.Expires) && !holderDead(other.Holder) {
			return nil, fmt.Errorf("%w: %s is held by %s since %s (until %s)", ErrBusy, job, other.Holder, other.Acquired.Format(time.RFC3339), other.Expires.Format(time.RFC3339))
		}
		// Expired, or its holder died on this host: remove it and take it.
		if derr := s.Delete(ctx, key); derr != nil && !errors.Is(derr, errkind.ErrNotFound) {
			return nil, derr
		}
	}
	return nil, fmt.Errorf("%w: %s: the lease was taken again meanwhile", ErrBusy, job)
}

// TakeLeaseInFirst takes the lease at key in the first of stores that
// answers (taken or busy). A job over several stores (walstored sync)
// cannot need all of them, since it runs to repair one that was missing;
// runs that see the same stores answer agree on where the lease is.
func TakeLeaseInFirst(ctx context.Context, stores []store.Store, key, job string, ttl time.Duration) (*Lease, error) {
	var errs []error
	for _, s := range stores {
		l, err := TakeLease(ctx, s, key, job, ttl)
		if err == nil || errors.Is(err, ErrBusy) {
			return l, err
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// holderDead reports a holder on this host whose process is gone (killed
// or crashed while holding the lease), so that the next run need not wait
// for the expiry. A holder on another host is never judged.
func holderDead(holder string) bool {
	host, _ := os.Hostname()
	var pid int
	if _, err := fmt.Sscanf(strings.TrimPrefix(holder, host+" "), "pid %d", &pid); err != nil || !strings.HasPrefix(holder, host+" pid ") || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

func readLease(ctx context.Context, s store.Store, key string) (Lease, error) {
	var l Lease
	_, rc, err := OpenObject(ctx, s, key, nil)
	if err != nil {
		return l, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	if err != nil {
		return l, err
	}
	return l, json.Unmarshal(b, &l)
}

// Release gives the lease back if it is still this holder's.
func (l *Lease) Release(ctx context.Context) error {
	cur, err := readLease(ctx, l.s, l.key)
	if err != nil {
		return err
	}
	if cur.Holder != l.Holder || !cur.Acquired.Equal(l.Acquired) {
		return nil // expired and taken by another run: not ours to remove
	}
	return l.s.Delete(ctx, l.key)
}
