// Package wire holds the Mattermost push-proxy wire types: the notification the
// Mattermost server posts to /api/v1/send_push, the ack it posts to
// /api/v1/ack, and the answer it expects. It imports nothing of pushrelay, so
// every other package can depend on it.
package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Notification types the Mattermost server sends in Notification.Type.
const (
	TypeMessage     = "message"
	TypeClear       = "clear"
	TypeUpdateBadge = "update_badge"
	TypeSession     = "session"
	TypeTest        = "test"
)

// Other wire constants.
const (
	// TransportVoIP marks a notification that goes out as an APNs VoIP push.
	TransportVoIP = "voip"
	// CategoryCanReply is the category Mattermost gives id-loaded and message pushes.
	CategoryCanReply = "CAN_REPLY"
	// NoSignature is what an empty signature is sent on as; the apps expect it from old proxies.
	NoSignature = "NO_SIGNATURE"
	// BadgeUnchanged in Notification.Badge leaves the app icon badge alone.
	BadgeUnchanged = -1

	// MaxMessageBytes is the longest message passed on; longer ones are cut on a UTF-8 boundary.
	MaxMessageBytes = 2047
	// MaxChannelNameBytes is the longest channel_name passed on.
	MaxChannelNameBytes = 64
)

// Notification is the body of POST /api/v1/send_push, field for field as the
// Mattermost server marshals its model.PushNotification. Unknown fields are
// ignored when decoding.
type Notification struct {
	AckID            string `json:"ack_id"`
	Platform         string `json:"platform"`
	ServerID         string `json:"server_id"`
	DeviceID         string `json:"device_id"`
	PostID           string `json:"post_id"`
	Category         string `json:"category,omitempty"`
	Sound            string `json:"sound,omitempty"`
	Message          string `json:"message,omitempty"`
	Badge            int    `json:"badge,omitempty"`
	ContentAvailable int    `json:"cont_ava,omitempty"`
	TeamID           string `json:"team_id,omitempty"`
	ChannelID        string `json:"channel_id,omitempty"`
	RootID           string `json:"root_id,omitempty"`
	ChannelName      string `json:"channel_name,omitempty"`
	Type             string `json:"type,omitempty"`
	SubType          string `json:"sub_type,omitempty"`
	Transport        string `json:"transport,omitempty"`
	SenderID         string `json:"sender_id,omitempty"`
	SenderName       string `json:"sender_name,omitempty"`
	OverrideUsername string `json:"override_username,omitempty"`
	OverrideIconURL  string `json:"override_icon_url,omitempty"`
	FromWebhook      string `json:"from_webhook,omitempty"`
	Version          string `json:"version,omitempty"`
	IsCRTEnabled     bool   `json:"is_crt_enabled"`
	IsIDLoaded       bool   `json:"is_id_loaded"`
	Signature        string `json:"signature"`

	// AppVersion is the N of a "-vN" platform suffix (1 when there is none).
	// It is set by Normalize and never sent on the wire.
	AppVersion int `json:"-"`
}

// Ack is the body of POST /api/v1/ack: the mobile app's receipt of a push,
// forwarded by the Mattermost server.
type Ack struct {
	ID         string `json:"id"`
	ReceivedAt int64  `json:"received_at"`
	Platform   string `json:"platform"`
	Type       string `json:"type"`
	PostID     string `json:"post_id,omitempty"`
	IsIDLoaded bool   `json:"is_id_loaded"`
}

// Answer statuses of send_push.
const (
	StatusOK     = "OK"
	StatusRemove = "REMOVE"
	StatusFail   = "FAIL"
)

// Response is the JSON answer to send_push and ack. It always travels with
// HTTP 200: the Mattermost server reads the status, not the HTTP code.
type Response struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// OK is the answer for a notification that was delivered or accepted for delivery.
func OK() Response { return Response{Status: StatusOK} }

// Remove tells the Mattermost server to forget the device: its token is dead.
func Remove() Response { return Response{Status: StatusRemove} }

// Fail reports a notification that was not and will not be delivered.
func Fail(err error) Response { return Response{Status: StatusFail, Error: err.Error()} }

// Validation errors. They name the field and never quote its value.
var (
	ErrNoServerID = errors.New("server_id is missing")
	ErrNoDeviceID = errors.New("device_id is missing")
	ErrNoPlatform = errors.New("platform is missing")
)

// SplitPlatform splits an app type with an optional "-vN" version suffix
// ("apple_rn-v2") into the platform name and the app version. A platform
// without a valid suffix has version 1.
func SplitPlatform(platform string) (name string, appVersion int) {
	i := strings.LastIndex(platform, "-v")
	if i < 0 {
		return platform, 1
	}
	v, err := strconv.Atoi(platform[i+2:])
	if err != nil || v < 1 {
		return platform, 1
	}
	return platform[:i], v
}

// Normalize validates n as the Mattermost push proxy does and applies the wire
// limits in place: it strips the platform's version suffix into AppVersion,
// cuts message and channel_name to their byte limits on a UTF-8 boundary, and
// replaces an empty signature with NoSignature. The error, if any, names the
// offending field.
func (n *Notification) Normalize() error {
	if n.ServerID == "" {
		return ErrNoServerID
	}
	if n.DeviceID == "" {
		return ErrNoDeviceID
	}
	if n.Platform == "" {
		return ErrNoPlatform
	}
	n.Platform, n.AppVersion = SplitPlatform(n.Platform)
	n.Message = TruncateUTF8(n.Message, MaxMessageBytes)
	n.ChannelName = TruncateUTF8(n.ChannelName, MaxChannelNameBytes)
	if n.Signature == "" {
		n.Signature = NoSignature
	}
	return nil
}

// TruncateUTF8 returns s cut to at most max bytes without splitting a UTF-8
// sequence.
func TruncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// TypeLabel maps a notification type onto the fixed set used in metric labels
// and logs; anything the relay does not know becomes "other".
func TypeLabel(t string) string {
	switch t {
	case TypeMessage, TypeClear, TypeUpdateBadge, TypeSession, TypeTest:
		return t
	case "":
		return "none"
	}
	return "other"
}

// TokenHash is the only form in which a device token may appear in a log
// line: the first 12 hex digits of its SHA-256.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}
