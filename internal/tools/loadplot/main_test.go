package main

import (
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const reportJSON = `{"sessions": %d, "concurrency": 8, "replicas": %d, "store": "%s", "guarded_service": true,
 "mix": "guarded=80,refresh=15,logout=5", "cpus": 2,
 "start_phase": {"seconds": 1, "calls": 100, "calls_per_second": 100},
 "mixed_phase": {"seconds": 2, "calls": 400, "calls_per_second": 200},
 "ops": {"start": {"count": 110, "p50_ms": 1, "p99_ms": 2, "p999_ms": 3},
         "guarded": {"count": 300, "p50_ms": 0.5, "p99_ms": 1.5, "p999_ms": 2.5},
         "refresh": {"count": 80, "calls_per_second": %d, "p50_ms": %g, "p99_ms": 3, "p999_ms": 4}},
 "rss_kib": {"serve-0": 51200, "guarded": 102400}, "redis_commands_per_runtime_call": %g}`

func write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sprintf(format string, args ...any) string {
	return strings.TrimSpace(fmt.Sprintf(format, args...))
}

// The tool draws a PNG and rewrites only the load section of the markdown, from the reports.
func TestPlotAndTables(t *testing.T) {
	var curve []string
	for _, n := range []int{1000, 100, 10000} { // out of order on purpose
		curve = append(curve, write(t, "c.json", sprintf(reportJSON, n, 1, "memory", 40, 1.0, 0.0)))
	}
	reps := []string{
		write(t, "m.json", sprintf(reportJSON, 1000, 1, "memory", 40, 1.0, 0.0)),
		write(t, "r.json", sprintf(reportJSON, 1000, 2, "redis", 30, 1.5, 4.0)),
	}
	md := write(t, "perf.md", "# Perf\n\nbefore\n\n<!-- load:begin -->\nold figures\n<!-- load:end -->\n\nafter\n")
	pngOut := filepath.Join(t.TempDir(), "load.png")
	if err := run(curve, reps, pngOut, "img/load.png", md, "scripts/loadtest.sh"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pngOut)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 300 {
		t.Errorf("plot is %v", b)
	}
	body, _ := os.ReadFile(md)
	doc := string(body)
	for _, want := range []string{"before", "after", "![Throughput, latency and memory against sessions](img/load.png)",
		"| 2 | redis | 1000 | 30 |", "| 4.00 |", "+0.500 ms p50 per refresh (75% of the in-memory throughput)"} {
		if !strings.Contains(doc, want) {
			t.Errorf("markdown lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "old figures") {
		t.Error("the old section was kept")
	}
	i100, i1000, i10000 := strings.Index(doc, "\n| 100 |"), strings.Index(doc, "\n| 1000 |"), strings.Index(doc, "\n| 10000 |")
	if i100 < 0 || !(i100 < i1000 && i1000 < i10000) {
		t.Errorf("curve rows missing or not sorted by sessions:\n%s", doc)
	}
	if err := run(curve, nil, "", "", write(t, "x.md", "no markers"), "x"); err == nil {
		t.Error("a file without the load markers was accepted")
	}
}
