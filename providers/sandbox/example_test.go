package sandbox_test

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/pushrelay/pushrelay/providers/sandbox"
)

// A test starts an APNs look-alike, marks a device token as dead, pushes
// over HTTP/2, then inspects what the look-alike received.
func ExampleNewAPNs() {
	apns := sandbox.NewAPNs()
	defer apns.Close()
	apns.KillToken("dead-token", "Unregistered")

	client := apns.Client() // trusts apns.CertPEM() and speaks HTTP/2
	for _, token := range []string{"live-token", "dead-token"} {
		req, _ := http.NewRequest(http.MethodPost, apns.URL()+"/3/device/"+token,
			strings.NewReader(`{"aps":{"alert":"You've received a new message."}}`))
		req.Header.Set("apns-topic", "com.mattermost.rn")
		req.Header.Set("apns-push-type", "alert")
		resp, err := client.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(token, resp.StatusCode, resp.Proto)
	}
	for _, r := range apns.Requests() {
		fmt.Println(r.Token, r.Header.Get("apns-topic"), r.Status)
	}
	fmt.Println("delivered:", apns.Delivered())
	// Output:
	// live-token 200 HTTP/2.0
	// dead-token 410 HTTP/2.0
	// live-token com.mattermost.rn 200
	// dead-token com.mattermost.rn 410
	// delivered: 1
}
