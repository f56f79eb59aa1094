//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package main

import "os"

// terminalColumns is 0 (unknown) where the relay cannot ask the terminal.
func terminalColumns(*os.File) int { return 0 }
