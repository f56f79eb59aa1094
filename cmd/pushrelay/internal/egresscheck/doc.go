// Package egresscheck is `pushrelay check --egress`: through the egress path
// the relay would build, it reaches every host the configured apps use and
// checks each app's credentials against it, and writes for the network team
// what works and what to open.
//
// It belongs to the command: it may import relay (for Config and
// AppHosts), providers/egress and the providers, never providers/sandbox.
package egresscheck
