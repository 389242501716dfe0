package plugin

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/keyfort/keyfort/provider"
)

// afterPinCheck, when set (by tests), runs between the digest check of a pinned binary and its
// start: the window in which a binary checked by path could be swapped.
var afterPinCheck func(path string)

// pinnedFile is a plugin binary opened, and its digest checked, for one start.
type pinnedFile struct {
	*os.File
	path  string
	ctime syscall.Timespec // before the digest was computed
}

// openPinned opens the plugin binary at path and checks that its SHA-256 is sum, reading the file
// it returns, so that the process started from that open file (see pinnedCommand) runs the bytes
// that were checked: a binary checked by path and then started by path can be replaced in between
// (go-plugin's SecureConfig does that).
func openPinned(path string, sum []byte) (*pinnedFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, provider.NewError(provider.ErrInvalidConfig, "", fmt.Errorf("plugin binary: %w", err))
	}
	ctime, err := changeTime(f)
	if err != nil {
		_ = f.Close()
		return nil, provider.NewError(provider.ErrUnavailable, "", fmt.Errorf("plugin binary %s: %w", path, err))
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		_ = f.Close()
		return nil, provider.NewError(provider.ErrUnavailable, "", fmt.Errorf("plugin binary %s: %w", path, err))
	}
	if !bytes.Equal(h.Sum(nil), sum) {
		_ = f.Close()
		return nil, provider.NewError(provider.ErrPermissionDenied, "", fmt.Errorf("plugin binary refused: the checksum of %s is not the pinned sha256", path))
	}
	if afterPinCheck != nil {
		afterPinCheck(path)
	}
	return &pinnedFile{File: f, path: path, ctime: ctime}, nil
}

// errRewritten is the cause of refusing a binary written to while it was checked and started.
var errRewritten = errors.New("was written to between its checksum and its start")

// unchanged reports whether the file was left alone from before its digest was computed until now,
// after the process started from it: once a process runs a file the kernel refuses writes to it
// (ETXTBSY), so a file whose inode did not change in between is the file that was checked. Call
// it before the plugin is handed anything (its settings).
func (p *pinnedFile) unchanged() error {
	now, err := changeTime(p.File)
	if err != nil {
		return provider.NewError(provider.ErrUnavailable, "", fmt.Errorf("plugin binary %s: %w", p.path, err))
	}
	if now != p.ctime {
		return provider.NewError(provider.ErrPermissionDenied, "", fmt.Errorf("plugin binary refused: %s %w", p.path, errRewritten))
	}
	return nil
}
