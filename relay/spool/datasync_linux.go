package spool

import (
	"os"
	"syscall"
)

// datasync writes f's data to the disk, and of its metadata what reading
// the data back needs (its size): fdatasync(2).
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
