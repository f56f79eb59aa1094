package egress

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// h2Server starts an HTTP/2 TLS server with handler and an Egress that
// trusts it; the server closes when the test ends.
func h2Server(t *testing.T, handler http.HandlerFunc) (*httptest.Server, *Egress) {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{CAFile: ca, AllowedHosts: []string{"127.0.0.1"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv, e
}

func TestHTTP2TransportOpensAnotherConnectionWhenOneIsBusy(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	arrived, release := make(chan struct{}, 1000), make(chan struct{})
	srv, e := h2Server(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		if r.URL.Path == "/hold" {
			arrived <- struct{}{}
			<-release
		}
	})
	rt := e.HTTP2Transport(nil)
	client := &http.Client{Transport: rt}
	get := func(path string) {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("%s over %s, want HTTP/2", path, resp.Proto)
		}
	}
	// hold sends n requests that the server answers only once all arrived.
	hold := func(n int) {
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() { defer wg.Done(); get("/hold") }()
		}
		for range n {
			<-arrived
		}
		for range n {
			release <- struct{}{}
		}
		wg.Wait()
	}
	distinct := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
	lanes := rt.(*guard).next.(*lanes)

	get("/") // the first connection
	hold(perLane / 2)
	if distinct() != 1 || lanes.count() != 1 {
		t.Fatalf("%d requests at once: %d connections, %d lanes; want 1", perLane/2, distinct(), lanes.count())
	}
	hold(perLane + perLane/2)
	if distinct() < 2 || lanes.count() != 2 {
		t.Errorf("%d requests at once: %d connections, %d lanes; want a second one", perLane+perLane/2, distinct(), lanes.count())
	}
}

// TestHTTP2TransportSurvivesDroppedConnections: when the server drops its
// connections under load, every request in flight ends (answered or with
// an error, never hanging on a queued write), and the next ones get through
// on new connections.
func TestHTTP2TransportSurvivesDroppedConnections(t *testing.T) {
	srv, e := h2Server(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	})
	client := &http.Client{Transport: e.HTTP2Transport(nil), Timeout: 10 * time.Second}
	post := func() error {
		resp, err := client.Post(srv.URL, "application/json", strings.NewReader(strings.Repeat("x", 2048)))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if err := post(); err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for range 5 {
		time.Sleep(20 * time.Millisecond)
		srv.CloseClientConnections()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("requests hung after their connections were dropped")
	}
	if ok.Load()+failed.Load() != 1600 {
		t.Fatalf("%d answered + %d failed, want 1600 ended", ok.Load(), failed.Load())
	}
	// A request sent in the instant the server drops its connection fails
	// (the server never read it), with any HTTP/2 client: let the last
	// drop be seen first.
	time.Sleep(50 * time.Millisecond)
	if err := post(); err != nil {
		t.Errorf("after the drops, a request failed: %v", err)
	}
	t.Logf("%d answered, %d failed while connections were dropped", ok.Load(), failed.Load())
}
