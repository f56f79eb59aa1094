package egress

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestHTTP2TransportOpensAnotherConnectionWhenOneIsBusy(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	arrived, release := make(chan struct{}, 1000), make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		if r.URL.Path == "/hold" {
			arrived <- struct{}{}
			<-release
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{CAFile: ca, AllowedHosts: []string{"127.0.0.1"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
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
