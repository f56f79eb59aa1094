// Package migrate converts mattermost-push-proxy's config.json into
// pushrelay YAML: `pushrelay migrate` prints it, and Legacy lets serve,
// check and policy explain load that file directly through relay.LoadConfig.
//
// It belongs to the command: it imports relay (for Converted and
// CheckAddr) and nothing else of ours.
package migrate
