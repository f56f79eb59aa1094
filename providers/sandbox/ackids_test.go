package sandbox_test

import (
	"fmt"
	"maps"
	"net/http"
	"testing"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

// TestCountAckIDs counts deliveries by ack_id on both look-alikes: only
// pushes answered 200, only while asked, from empty after a Reset.
func TestCountAckIDs(t *testing.T) {
	apple, google := sandbox.NewAPNs(), sandbox.NewFCM()
	defer apple.Close()
	defer google.Close()
	creds, err := sandbox.WriteCredentials(t.TempDir(), nil, google)
	if err != nil {
		t.Fatal(err)
	}
	mc, _ := fcmClient(t, google, creds)
	c := &http.Client{Transport: trustingTransport(t, apple.CertPEM())}
	apple.KillToken("gone", "")
	google.KillToken("gone", "")

	sends := []struct {
		name string
		send func(token, ack string) error
		look interface {
			CountAckIDs(bool)
			AckIDs() map[string]int
			Reset()
			SetRecording(bool)
		}
	}{
		{"APNs", func(token, ack string) error {
			a := post(t.Context(), c, apple.URL()+"/3/device/"+token, fmt.Sprintf(`{"aps":{"alert":"hi"},"ack_id":%q}`, ack), "apns-topic", "x")
			if a.err == nil && a.status != http.StatusOK {
				return fmt.Errorf("status %d", a.status)
			}
			return a.err
		}, apple},
		{"FCM", func(token, ack string) error {
			_, err := mc.Send(t.Context(), &messaging.Message{Token: token, Data: map[string]string{"type": "message", "ack_id": ack}})
			return err
		}, google},
	}
	for _, s := range sends {
		t.Run(s.name, func(t *testing.T) {
			s.look.SetRecording(false)
			if err := s.send("tok", "before"); err != nil {
				t.Fatal(err)
			}
			if got := s.look.AckIDs(); got != nil {
				t.Fatalf("AckIDs() = %v before CountAckIDs(true), want nil", got)
			}
			s.look.CountAckIDs(true)
			for _, ack := range []string{"a", "b", "b"} {
				if err := s.send("tok", ack); err != nil {
					t.Fatal(err)
				}
			}
			if s.send("gone", "refused") == nil {
				t.Fatal("a dead token's push was answered 200")
			}
			if got, want := s.look.AckIDs(), map[string]int{"a": 1, "b": 2}; !maps.Equal(got, want) {
				t.Errorf("AckIDs() = %v, want %v", got, want)
			}
			s.look.Reset()
			if err := s.send("tok", "c"); err != nil {
				t.Fatal(err)
			}
			if got, want := s.look.AckIDs(), map[string]int{"c": 1}; !maps.Equal(got, want) {
				t.Errorf("after Reset, AckIDs() = %v, want %v", got, want)
			}
			s.look.CountAckIDs(false)
			if got := s.look.AckIDs(); got != nil {
				t.Errorf("AckIDs() = %v after CountAckIDs(false), want nil", got)
			}
		})
	}
}
