//go:build unix

package harden

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ReplaceableBy reports who besides its owner could replace the executable at path, or nil when
// no one could: the file and every directory above it (of the path as given and of the file it
// resolves to) must be owned by root or by this process's user and be writable by no one else. A
// world- or group-writable directory with the sticky bit (/tmp) is safe, since only an entry's
// owner may rename or delete it there. These are OpenSSH's StrictModes rules for the programs a
// host starts and hands secrets to.
func ReplaceableBy(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	if err := safeEntry(real, false); err != nil {
		return err
	}
	for _, p := range []string{abs, real} {
		for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
			if err := safeEntry(dir, true); err != nil {
				return err
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return nil
}

func safeEntry(path string, dir bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := int(st.Uid); uid != 0 && uid != os.Geteuid() {
		return fmt.Errorf("%s is owned by another user (uid %d)", path, uid)
	}
	mode := fi.Mode()
	if dir && mode&fs.ModeSticky != 0 {
		return nil
	}
	switch {
	case mode.Perm()&0o002 != 0:
		return fmt.Errorf("%s is writable by every user (mode %04o)", path, mode.Perm())
	case mode.Perm()&0o020 != 0:
		return fmt.Errorf("%s is writable by its group (mode %04o)", path, mode.Perm())
	}
	return nil
}
