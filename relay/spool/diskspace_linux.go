package spool

import "syscall"

// diskSpace reports the space left to unprivileged writers on the file
// system that holds dir, and its size, in bytes.
func diskSpace(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	for {
		err = syscall.Statfs(dir, &st)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// canReadDiskSpace tells whether diskSpace works here.
const canReadDiskSpace = true
