package spool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DeadTokensBucket is the JetStream key-value bucket where relays sharing a
// spool remember the device tokens a redelivery found dead, so that each of
// them answers the next push to such a device REMOVE. Its keys are opaque
// (a hash of the app and the token, made by the relay: never a token), its
// values empty, and it keeps each key for spool.max_age. The embedded
// spool has one too, so that a restarted relay still remembers.
const DeadTokensBucket = "PUSHRELAY_DEAD_TOKENS"

// deadTokensMaxBytes bounds the bucket: well over 100,000 keys. When it is
// full, new keys are refused (the relay that found them still remembers
// them in memory) until old ones expire.
const deadTokensMaxBytes = 32 << 20

// DeadTokens is the spool's shared memory of dead device tokens. It is safe
// for concurrent use.
type DeadTokens struct {
	kv jetstream.KeyValue
}

// DeadTokens opens the bucket DeadTokensBucket, creating it, or bringing
// its TTL (spool.max_age) and bound up to date.
func (s *Spool) DeadTokens(ctx context.Context) (*DeadTokens, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	want := jetstream.KeyValueConfig{
		Bucket:      DeadTokensBucket,
		Description: "pushrelay: device tokens found dead on a redelivery",
		History:     1,
		TTL:         s.cfg.MaxAge,
		MaxBytes:    deadTokensMaxBytes,
		Storage:     jetstream.FileStorage,
	}
	// An existing bucket keeps the replicas and placement an operator gave it.
	kv, err := s.js.KeyValue(ctx, DeadTokensBucket)
	if err == nil {
		var st jetstream.KeyValueStatus
		if st, err = kv.Status(ctx); err == nil {
			if st.TTL() == want.TTL {
				return &DeadTokens{kv: kv}, nil
			}
			if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
				cur := bs.StreamInfo().Config
				want.Replicas, want.Placement = cur.Replicas, cur.Placement
			}
			kv, err = s.js.UpdateKeyValue(ctx, want)
		}
	} else if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = s.js.CreateOrUpdateKeyValue(ctx, want)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: dead token bucket %s: %w", DeadTokensBucket, err)
	}
	return &DeadTokens{kv: kv}, nil
}

// Remember records key (an opaque name of a device token, of the letters
// [-_=.a-zA-Z0-9]; never the token itself) as found dead now, for
// spool.max_age, for every relay that watches the bucket.
func (d *DeadTokens) Remember(ctx context.Context, key string) error {
	if _, err := d.kv.Put(ctx, key, nil); err != nil {
		return fmt.Errorf("spool: remembering a dead token in %s: %w", DeadTokensBucket, err)
	}
	return nil
}

// Watch calls seen, from one goroutine, with every key remembered within
// spool.max_age (by any relay sharing the spool) and when it was
// remembered: those already there first, then each new one as it comes,
// until the spool is closed or ctx ends. It returns once the watch is set
// up; the error says why it could not be.
func (d *DeadTokens) Watch(ctx context.Context, seen func(key string, at time.Time)) error {
	w, err := d.kv.WatchAll(context.WithoutCancel(ctx), jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("spool: watching %s: %w", DeadTokensBucket, err)
	}
	go func() {
		defer w.Stop()
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return // the spool closed its connection
				}
				if e != nil && e.Operation() == jetstream.KeyValuePut {
					seen(e.Key(), e.Created())
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}
