// Package explain is `pushrelay policy explain`: for one notification, which
// app it goes to and, for every configured app, what the policy removes and
// what would be sent to Apple, Google or the upstream push proxy, field by
// field, built with the providers' own payload builders. It reads no
// credential and opens no connection.
//
// It belongs to the command: it may import relay (for Config), policy, the
// providers' payload builders and relay/wire, never providers/sandbox.
package explain
