//go:build !linux

package spool

import "errors"

// diskSpace is not implemented here: the spool then learns of a full disk
// only from the embedded JetStream's write errors.
func diskSpace(string) (free, total uint64, err error) {
	return 0, 0, errors.ErrUnsupported
}

// canReadDiskSpace tells whether diskSpace works here.
const canReadDiskSpace = false
