package relay

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushrelay/pushrelay/relay/spool"
)

// sharedDead is the spool's bucket of dead tokens (spool.DeadTokens), once
// the relay has started to watch it: the relays sharing a spool tell each
// other the tokens their redeliveries found dead through it.
type sharedDead struct {
	once   sync.Once
	bucket atomic.Pointer[spool.DeadTokens]
}

// errNotShared says the bucket is not open (yet).
var errNotShared = errors.New("the spool's dead token bucket is not open")

// remember puts k in the bucket.
func (s *sharedDead) remember(ctx context.Context, k deadKey) error {
	b := s.bucket.Load()
	if b == nil {
		return errNotShared
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return b.Remember(ctx, k.String())
}

// watchDead opens the spool's bucket of dead tokens and copies what it
// holds, and each key added later by any relay, into r.dead, until the
// spool closes. It runs once; a failure is logged, and the relay then
// remembers only what it found itself.
func (r *Relay) watchDead() {
	r.shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := r.spool.DeadTokens(ctx)
		if err == nil {
			err = b.Watch(context.Background(), func(key string, at time.Time) {
				k, ok := parseDeadKey(key)
				if !ok {
					return
				}
				now := time.Now()
				r.dead.add(k, at, now)
				r.dead.sweep(now)
			})
		}
		if err != nil {
			r.log.Warn("dead tokens are not shared through the spool: each relay remembers only those it found", "error", err.Error())
			return
		}
		r.shared.bucket.Store(b)
	})
}
