//go:build !linux

package spool

import "os"

// datasync writes f to the disk: fsync(2) where there is no fdatasync.
func datasync(f *os.File) error { return f.Sync() }
