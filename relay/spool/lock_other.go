//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package spool

// lockDir does nothing where flock is not available: do not point two
// relays at one spool.dir there.
func lockDir(string) (func(), error) { return func() {}, nil }
