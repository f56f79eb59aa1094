//go:build !linux

package spool

// dirWatch: there is no inotify here; the syncer scans the directory each
// round.
type dirWatch struct{}

type changes struct {
	blocks map[string]struct{}
	dir    bool
	lost   bool
}

func watchDir(string) (*dirWatch, error) { return nil, nil }
func (*dirWatch) read(*changes) error    { return nil }
func (*dirWatch) close()                 {}
