package spool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// cluster is a JetStream cluster of in-process servers on loopback, whose
// nodes can be stopped and started again on the same ports and stores.
type cluster struct {
	t      *testing.T
	opts   []*server.Options
	nodes  []*server.Server
	urls   []string
	secret string // in the client URLs: no error may quote it
}

func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{t: t, secret: "s3cret-pw"}
	cports, rports := make([]int, n), make([]int, n)
	for i := range n {
		cports[i], rports[i] = freePort(t), freePort(t)
	}
	var routes []*url.URL
	for i := range n {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", rports[i])})
	}
	for i := range n {
		c.opts = append(c.opts, &server.Options{
			ServerName: fmt.Sprint("node", i), Host: "127.0.0.1", Port: cports[i],
			Username: "relay", Password: c.secret,
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "spool", Host: "127.0.0.1", Port: rports[i]}, Routes: routes,
			NoSigs: true, NoLog: true, DisableJetStreamBanner: true,
		})
		c.urls = append(c.urls, fmt.Sprintf("nats://relay:%s@127.0.0.1:%d", c.secret, cports[i]))
		c.nodes = append(c.nodes, nil)
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	waitFor(t, 30*time.Second, "a JetStream cluster with a leader", func() bool {
		for _, ns := range c.nodes {
			if ns.JetStreamIsLeader() {
				return true
			}
		}
		return false
	})
	return c
}

func (c *cluster) start(i int) {
	o := *c.opts[i]
	ns, err := server.NewServer(&o)
	if err != nil {
		c.t.Fatal(err)
	}
	ns.Start()
	// Generous: a clustered JetStream node on a loaded 2-core machine has
	// been seen to take more than 10 s.
	if !ns.ReadyForConnections(30 * time.Second) {
		c.t.Fatalf("node %d not ready", i)
	}
	c.nodes[i] = ns
}

func (c *cluster) stop(i int) {
	if ns := c.nodes[i]; ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		c.nodes[i] = nil
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// assertUnavailable checks that err says JetStream is unavailable and
// names spool.nats_url but not its password.
func assertUnavailable(t *testing.T, what string, err error, secret string) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("%s: no error without a quorum", what)
	case !errors.Is(err, ErrUnavailable):
		t.Fatalf("%s: %v, want ErrUnavailable", what, err)
	case !strings.Contains(err.Error(), "spool.nats_url"):
		t.Fatalf("%s: %q does not name spool.nats_url", what, err)
	case strings.Contains(err.Error(), secret):
		t.Fatalf("%s: %q quotes the URL's password", what, err)
	}
	if got := Reason(err); got != ReasonUnavailable {
		t.Fatalf("%s: Reason = %q, want %q", what, got, ReasonUnavailable)
	}
}

// An external 3-node JetStream, the stream on 3 replicas, loses two nodes:
// Put fails fast with a clear error (without waiting for its deadline) and
// so does Check; when the nodes come back, Put works again by itself and
// every entry accepted before is delivered once.
func TestExternalQuorumLost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := newCluster(t, 3)
	cfg := Config{NATSURL: strings.Join(c.urls, ","), MaxAge: time.Minute}
	var s *Spool
	waitFor(t, 30*time.Second, "the spool opening on the cluster", func() bool {
		var err error
		s, err = open(cfg, fastBackoff, testLog(t), testTuning)
		return err == nil
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	ctx := context.Background()
	info, err := s.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc := info.Config
	sc.Replicas = 3
	if _, err := s.js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the stream on three current replicas", func() bool {
		info, err := s.stream.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, p := range info.Cluster.Replicas {
			if !p.Current || p.Offline {
				return false
			}
		}
		return true
	})
	accepted := map[string]bool{}
	waitFor(t, 30*time.Second, "a Put on three replicas", func() bool {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return s.Put(pctx, entry("app", "first", "first"), 0) == nil
	})
	accepted["app/first"] = true
	o := newDiskOutage()
	waitFor(t, 30*time.Second, "the consumer on three replicas", func() bool {
		return s.Consume([]string{"app"}, o.deliver, nil) == nil
	})
	for i := range 50 {
		put(t, s, entry("app", fmt.Sprint("ack-", i), fmt.Sprint("dev-", i)), 0)
		accepted[fmt.Sprint("app/dev-", i)] = true
	}

	c.stop(1)
	c.stop(2)
	// The first Put finds out, within the short deadline the relay gives
	// it; the next ones are refused at once, long before theirs.
	err, _ = putWithin(s, entry("app", "lost-0", "lost-0"), time.Second)
	assertUnavailable(t, "the first Put without a quorum", err, c.secret)
	t.Logf("without a quorum: %v", err)
	for i := range 20 {
		err, waited := putWithin(s, entry("app", fmt.Sprint("lost-", i+1), fmt.Sprint("lost-", i+1)), 10*time.Second)
		if waited {
			t.Fatalf("a later Put without a quorum waited for its deadline: %v", err)
		}
		assertUnavailable(t, "a later Put without a quorum", err, c.secret)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	assertUnavailable(t, "Check", s.Check(cctx), c.secret)
	if cctx.Err() != nil {
		t.Fatal("Check waited for its deadline")
	}
	cancel()

	c.start(1)
	c.start(2)
	waitFor(t, 60*time.Second, "Check passing again", func() bool { return s.Check(ctx) == nil })
	waitFor(t, 30*time.Second, "Put working again", func() bool {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return s.Put(pctx, entry("app", "after", "after"), 0) == nil
	})
	accepted["app/after"] = true
	o.down.Store(false)
	waitEmpty(t, s, 60*time.Second)
	time.Sleep(2 * testTuning.ackWait)
	o.checkOnce(t, accepted)
}
