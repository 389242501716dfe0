package hosttest

import (
	"bufio"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// StartLogged runs bin with args and env, waits for a line of its combined output to match ready,
// and returns ready's submatches (the addresses it serves on), the output so far and the process,
// which is killed when the test ends.
func StartLogged(tb testing.TB, bin string, env []string, ready *regexp.Regexp, args ...string) ([]string, *strings.Builder, *exec.Cmd) {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var log strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if m := ready.FindStringSubmatch(sc.Text()); m != nil {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return m[1:], &log, cmd
		}
	}
	tb.Fatalf("%s %v never served:\n%s", bin, args, log.String())
	return nil, nil, nil
}
