package spool

import (
	"errors"
	"math/rand/v2"
	"time"
)

// Defaults applied by Open to the zero values of Config and Backoff.
const (
	DefaultMaxAge      = time.Hour
	DefaultMaxMessages = 1_000_000
	DefaultMaxBytes    = 1 << 30 // 1 GiB
	DefaultBackoffInit = time.Second
	DefaultBackoffMax  = 5 * time.Minute
)

// Config is the `spool` section of the relay config (yaml tags as shown).
type Config struct {
	Dir         string        `yaml:"dir"`          // embedded JetStream store
	NATSURL     string        `yaml:"nats_url"`     // set => use this external JetStream instead
	MaxAge      time.Duration `yaml:"max_age"`      // older entries are dropped (onExpired), never delivered late
	MaxMessages int64         `yaml:"max_messages"` // bound; 0 = default 1_000_000
	MaxBytes    int64         `yaml:"max_bytes"`    // bound; 0 = default 1 GiB
}

// WithDefaults returns c with its zero bounds replaced by the defaults:
// max_age 1h, max_messages 1,000,000, max_bytes 1 GiB.
func (c Config) WithDefaults() Config {
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxMessages == 0 {
		c.MaxMessages = DefaultMaxMessages
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	return c
}

// Validate checks c after defaults. Every error names its key.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.NATSURL == "" && c.Dir == "" {
		errs = append(errs, errors.New("spool.dir: required when spool.nats_url is empty"))
	}
	if c.MaxAge < 0 {
		errs = append(errs, errors.New("spool.max_age: must be positive"))
	}
	if c.MaxMessages < 0 {
		errs = append(errs, errors.New("spool.max_messages: must be positive"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, errors.New("spool.max_bytes: must be positive"))
	}
	return errors.Join(errs...)
}

// streamMaxAge is the stream's own age limit: a safety net a little above
// max_age, so that the consumers see (and count) an entry expire before the
// stream would drop it silently. Only entries of an app no consumer serves
// any more reach it.
func (c Config) streamMaxAge() time.Duration {
	return c.MaxAge + max(c.MaxAge/10, time.Minute)
}

// duplicates is the stream's deduplication window: window, or max_age
// when shorter, and no less than the 100ms the server allows. JetStream
// keeps every id of the window in memory, so a window of max_age would
// cost memory in proportion to the spool's depth.
func (c Config) duplicates(window time.Duration) time.Duration {
	return max(min(c.MaxAge, window), 100*time.Millisecond)
}

// Backoff is the redelivery schedule: Initial * 2^(attempt-1) with jitter (±20%), capped at Max; a RetryAfter the provider gave wins when longer.
type Backoff struct{ Initial, Max time.Duration }

// WithDefaults returns b with zero fields replaced by the defaults (1s, 5m)
// and Max raised to Initial when it is lower.
func (b Backoff) WithDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInit
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	b.Max = max(b.Max, b.Initial)
	return b
}

// Delay is the wait after a failed attempt (1 for the first redelivery):
// Initial * 2^(attempt-1), jittered by ±20% so that entries that failed
// together do not come back together, and capped at Max (so once there,
// delays fall between 80% and 100% of Max).
func (b Backoff) Delay(attempt int) time.Duration {
	b = b.WithDefaults()
	d := b.Initial
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return min(time.Duration(float64(d)*(0.8+0.4*rand.Float64())), b.Max)
}
