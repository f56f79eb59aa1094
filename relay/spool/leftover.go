package spool

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// sweepEvery is how often a worker looks for entries acked but kept.
const sweepEvery = 10 * time.Minute

// sweep removes the entries of w's app that its consumer has acked but
// the stream still holds. In a work-queue stream an ack removes the entry;
// when the store could not write that removal (a full disk: a relay that
// stopped before redoing it, or a version before the redo), the entry
// comes back with the stream, below the consumer's ack floor, where
// JetStream never hands it out again: counted, on disk, for good. Every
// entry at or below the ack floor was acked, so removing it loses nothing.
//
// It runs when a worker starts, after its consumer is set up again, and
// every sweepEvery: an entry acked above the ack floor (one before it was
// still pending) is found once the floor has passed it. When there is
// nothing to remove it costs one lookup.
func (s *Spool) sweep(ctx context.Context, w *worker) {
	info := w.cons.CachedInfo()
	if info == nil || info.AckFloor.Stream == 0 {
		return
	}
	floor, subj := info.AckFloor.Stream, subject(w.app)
	ctx, cancel := context.WithTimeout(ctx, s.tune.opTimeout)
	defer cancel()
	removed := 0
	for seq := uint64(1); ; {
		m, err := s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			s.log.Warn("spool: looking for entries delivered but left in the stream failed", "app", w.app, "error", err.Error())
			break
		}
		if m.Sequence > floor {
			break
		}
		if err := s.stream.DeleteMsg(ctx, m.Sequence); err != nil && !gone(err) {
			s.log.Warn("spool: removing an entry delivered but left in the stream failed", "app", w.app, "error", err.Error())
			break
		}
		removed++
		seq = m.Sequence + 1
	}
	if removed > 0 {
		s.log.Info("spool: removed entries delivered before but left in the stream", "app", w.app, "count", removed)
	}
}
