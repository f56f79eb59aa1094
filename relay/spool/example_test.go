package spool_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/pushrelay/pushrelay/relay/spool"
	"github.com/pushrelay/pushrelay/relay/wire"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "spool")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	s, err := spool.Open(spool.Config{Dir: dir, MaxAge: time.Hour},
		spool.Backoff{Initial: time.Second, Max: 5 * time.Minute}, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	defer s.Close(context.Background())

	// The provider failed with a retryable error: spool the stripped notification.
	n := wire.Notification{AckID: "ack1", Platform: "apple_rn", ServerID: "srv", DeviceID: "token", Type: wire.TypeMessage}
	if err := s.Put(context.Background(), spool.Entry{App: "apple_rn", Notification: n, Accepted: time.Now()}, 0); err != nil {
		panic(err)
	}

	done := make(chan struct{})
	err = s.Consume([]string{"apple_rn"},
		func(ctx context.Context, e spool.Entry, attempt int) spool.Verdict {
			fmt.Println("redelivering to", e.App, "attempt", attempt)
			close(done)
			return spool.Verdict{Done: true} // delivered: remove it
		},
		func(e spool.Entry) { fmt.Println("expired", e.App) })
	if err != nil {
		panic(err)
	}
	<-done
	// Output: redelivering to apple_rn attempt 1
}
