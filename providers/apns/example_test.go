package apns_test

import (
	"encoding/json"
	"fmt"

	"github.com/pushrelay/pushrelay/providers/apns"
	"github.com/pushrelay/pushrelay/relay/wire"
)

func ExampleBuild() {
	// An id-only push, as policy id_only leaves it.
	n := wire.Notification{
		AckID:      "ack-1",
		Platform:   "apple_rn-v2",
		ServerID:   "server-1",
		DeviceID:   "0f1e2d3c",
		PostID:     "post-1",
		Category:   wire.CategoryCanReply,
		Message:    "You've received a new message.",
		Badge:      2,
		ChannelID:  "channel-1",
		Type:       wire.TypeMessage,
		SenderID:   "user-1",
		Version:    "v2",
		IsIDLoaded: true,
		Signature:  "sig",
	}
	if err := n.Normalize(); err != nil {
		panic(err)
	}
	an := apns.Build(&n, "com.mattermost.rn")
	body, _ := json.Marshal(an)
	fmt.Println("POST /3/device/" + an.DeviceToken)
	fmt.Println("apns-topic:", an.Topic)
	fmt.Println("apns-push-type:", an.PushType)
	fmt.Println("apns-priority:", an.Priority)
	fmt.Println(string(body))
	// Output:
	// POST /3/device/0f1e2d3c
	// apns-topic: com.mattermost.rn
	// apns-push-type: alert
	// apns-priority: 10
	// {"ack_id":"ack-1","aps":{"alert":"You've received a new message.","badge":2,"category":"CAN_REPLY","content-available":1,"mutable-content":1,"sound":"default","thread-id":"channel-1"},"channel_id":"channel-1","id_loaded":true,"is_crt_enabled":false,"post_id":"post-1","sender_id":"user-1","server_id":"server-1","signature":"sig","sub_type":"","type":"message","version":"v2"}
}
