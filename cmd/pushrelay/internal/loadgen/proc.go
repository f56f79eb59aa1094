package loadgen

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc.
const clockTicks = 100

// processCPU returns the user+system CPU time a process has used, from
// /proc/PID/stat (Linux).
func processCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields restart after its ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// processSyscalls returns how many read and write system calls a process
// has made, from /proc/PID/io (Linux): on a socket, read and write (and
// their vectored forms), which is what Go's network I/O calls.
func processSyscalls(pid int) (reads, writes int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0, err
	}
	var gotR, gotW bool
	for line := range strings.Lines(string(b)) {
		name, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
		switch name {
		case "syscr":
			reads, err = strconv.ParseInt(v, 10, 64)
			gotR = err == nil
		case "syscw":
			writes, err = strconv.ParseInt(v, 10, 64)
			gotW = err == nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/io: %s: %w", pid, name, err)
		}
	}
	if !gotR || !gotW {
		return 0, 0, fmt.Errorf("/proc/%d/io: no syscr or syscw", pid)
	}
	return reads, writes, nil
}

// peakRSS returns a process's peak resident set size (VmHWM), in bytes.
func peakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM") }

// currentRSS returns a process's resident set size (VmRSS), in bytes.
func currentRSS(pid int) (int64, error) { return statusBytes(pid, "VmRSS") }

// statusBytes reads a "kB" field of /proc/PID/status (Linux), in bytes.
func statusBytes(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, field, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}
