package plugin

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"

	"github.com/keyfort/keyfort/provider"
)

// afterPinCheck, when set (by tests), runs between the digest check of a pinned binary and its
// start: the window in which a binary checked by path could be swapped.
var afterPinCheck func(path string)

// openPinned opens the plugin binary at path and checks that its SHA-256 is sum, reading the file
// it returns, so that the process started from that open file (see pinnedCommand) runs the bytes
// that were checked: a binary checked by path and then started by path can be replaced in between
// (go-plugin's SecureConfig does that).
func openPinned(path string, sum []byte) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, provider.NewError(provider.ErrInvalidConfig, "", fmt.Errorf("plugin binary: %w", err))
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
	return f, nil
}
