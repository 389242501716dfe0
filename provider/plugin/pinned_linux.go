package plugin

import (
	"os"
	"os/exec"
	"syscall"
)

// pinnedExec reports whether pinned binaries are started from the file that was checked.
const pinnedExec = true

// pinnedPath is what a child started by pinnedCommand executes: its fd 3.
const pinnedPath = "/proc/self/fd/3"

// pinnedCommand starts the checked binary f through its descriptor: f becomes the child's fd 3 and
// the child executes /proc/self/fd/3, the same inode whatever the path names by then. argv[0] stays
// path, so ps and the plugin's logs show it.
func pinnedCommand(f *os.File, path string, args []string) *exec.Cmd {
	cmd := exec.Command(pinnedPath)
	cmd.Args = append([]string{path}, args...)
	cmd.ExtraFiles = []*os.File{f}
	return cmd
}

// changeTime is f's inode change time: any write to the file, or change of its times or mode,
// moves it, and no one can set it back.
func changeTime(f *os.File) (syscall.Timespec, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return syscall.Timespec{}, err
	}
	return st.Ctim, nil
}

// releaseStartFile closes, in a plugin process, the descriptor its host started it through
// (pinnedCommand's fd 3), which would otherwise stay open for the process's life and pass on to
// any program it starts: fd 3 is closed only when it is this very executable.
func releaseStartFile() {
	var fd3, exe syscall.Stat_t
	if syscall.Fstat(3, &fd3) != nil || syscall.Stat("/proc/self/exe", &exe) != nil {
		return
	}
	if fd3.Dev == exe.Dev && fd3.Ino == exe.Ino && fd3.Mode&syscall.S_IFMT == syscall.S_IFREG {
		_ = syscall.Close(3)
	}
}
