package hosttest

import (
	"bufio"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Log is a child process's output, still growing while the process runs. It is safe for
// concurrent use.
type Log struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Log) add(line string) {
	l.mu.Lock()
	l.b.WriteString(line + "\n")
	l.mu.Unlock()
}

// Write appends p, so that a Log can also be a logger's output.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns the output so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartLogged runs bin with args and env, waits for a line of its combined output to match ready,
// and returns ready's submatches (the addresses it serves on), its output (collected until it
// exits) and the process, which is killed when the test ends.
func StartLogged(tb testing.TB, bin string, env []string, ready *regexp.Regexp, args ...string) ([]string, *Log, *exec.Cmd) {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	m, log := StartCmd(tb, cmd, ready)
	return m, log, cmd
}

// StartCmd is StartLogged for a command the caller made (to set its process attributes, say).
func StartCmd(tb testing.TB, cmd *exec.Cmd, ready *regexp.Regexp) ([]string, *Log) {
	tb.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	log := &Log{}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		log.add(sc.Text())
		if m := ready.FindStringSubmatch(sc.Text()); m != nil {
			go func() {
				for sc.Scan() {
					log.add(sc.Text())
				}
			}()
			return m[1:], log
		}
	}
	tb.Fatalf("%s %v never served:\n%s", cmd.Path, cmd.Args[1:], log.String())
	return nil, nil
}
