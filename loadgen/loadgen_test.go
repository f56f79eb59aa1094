package loadgen_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/loadgen"
	"github.com/pushrelay/pushrelay/relay/wire"
)

func TestBodiesFollowTheMix(t *testing.T) {
	bodies := loadgen.Bodies(10000, loadgen.DefaultMix(), "apple_rn", "android_rn")
	var apple, clear, idLoaded, dead int
	for _, b := range bodies {
		var n wire.Notification
		if err := json.Unmarshal(b, &n); err != nil {
			t.Fatal(err)
		}
		if n.Platform == "apple_rn" {
			apple++
		}
		if n.Type == wire.TypeClear {
			clear++
		}
		if n.IsIDLoaded {
			idLoaded++
		}
		if strings.HasPrefix(n.DeviceID, "dead") {
			dead++
		}
	}
	within := func(what string, got, want int) {
		if got < want*8/10 || got > want*12/10 {
			t.Errorf("%s: %d of 10000, want about %d", what, got, want)
		}
	}
	within("iOS", apple, 5000)
	within("clear", clear, 1000)
	within("id_loaded", idLoaded, 1000)
	within("dead tokens", dead, 500)
}

func TestRunCountsAnswersAndMeasuresAProcess(t *testing.T) {
	var seen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen.Add(1)
		switch {
		case strings.Contains(string(body), `"device_id":"dead`):
			io.WriteString(w, `{"status":"REMOVE"}`)
		case strings.Contains(string(body), `"type":"clear"`):
			io.WriteString(w, `{"status":"FAIL","error":"x"}`)
		default:
			io.WriteString(w, `{"status":"OK"}`)
		}
	}))
	defer srv.Close()
	rep, err := loadgen.Run(context.Background(), loadgen.Options{URL: srv.URL, Concurrency: 4, Requests: 500,
		Mix: loadgen.DefaultMix(), APNsPlatform: "apple_rn", FCMPlatform: "android_rn", PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 500 || seen.Load() != 500 || rep.OK+rep.Remove+rep.Fail != 500 || rep.Remove == 0 || rep.Fail == 0 {
		t.Errorf("report %+v, server saw %d", rep, seen.Load())
	}
	if rep.P50 <= 0 || rep.P99 < rep.P50 || rep.Max < rep.P99 || rep.PeakRSS <= 0 {
		t.Errorf("latencies or process figures missing: %+v", rep)
	}

	rep, err = loadgen.Run(context.Background(), loadgen.Options{URL: srv.URL, Concurrency: 2, Duration: 200 * time.Millisecond, Mix: loadgen.DefaultMix()})
	if err != nil || rep.Requests == 0 || rep.Elapsed > time.Second {
		t.Errorf("duration-bound run: %+v %v", rep, err)
	}
	if _, err := loadgen.Run(context.Background(), loadgen.Options{URL: srv.URL, Concurrency: 1}); err == nil {
		t.Error("a run without bounds was accepted")
	}
}
