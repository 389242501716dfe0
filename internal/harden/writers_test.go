//go:build unix

package harden_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyfort/keyfort/internal/harden"
)

// TestReplaceableBy: an executable, or a directory above it, writable by its group or by everyone
// (without the sticky bit) lets other users replace the program; so does a symlink whose directory
// is. The sticky /tmp is safe.
func TestReplaceableBy(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "plugin")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := harden.ReplaceableBy(bin); err != nil {
		t.Fatalf("a 0755 file in 0755 directories under the sticky /tmp: %v", err)
	}
	check := func(what, want string) {
		t.Helper()
		err := harden.ReplaceableBy(bin)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error with %q", what, err, want)
		}
	}
	_ = os.Chmod(bin, 0o757)
	check("a world-writable file", bin+" is writable by every user (mode 0757)")
	_ = os.Chmod(bin, 0o775)
	check("a group-writable file", bin+" is writable by its group (mode 0775)")
	_ = os.Chmod(bin, 0o755)
	_ = os.Chmod(dir, 0o777)
	check("a world-writable directory", dir+" is writable by every user (mode 0777)")
	_ = os.Chmod(dir, 0o777|os.ModeSticky)
	if err := harden.ReplaceableBy(bin); err != nil {
		t.Errorf("a sticky world-writable directory: %v", err)
	}
	_ = os.Chmod(dir, 0o755)

	links := filepath.Join(t.TempDir(), "links")
	if err := os.Mkdir(links, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(links, "plugin")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	if err := harden.ReplaceableBy(link); err != nil {
		t.Errorf("a symlink in a safe directory to a safe file: %v", err)
	}
	_ = os.Chmod(links, 0o777)
	if err := harden.ReplaceableBy(link); err == nil || !strings.Contains(err.Error(), links+" is writable by every user") {
		t.Errorf("a symlink in a world-writable directory: got %v", err)
	}
	if err := harden.ReplaceableBy(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file passed")
	}
}
