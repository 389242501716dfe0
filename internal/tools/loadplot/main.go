package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"os"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// report is the part of a "provider-host bench --json" report that the curves use.
type report struct {
	Sessions    int                `json:"sessions"`
	Concurrency int                `json:"concurrency"`
	Replicas    int                `json:"replicas"`
	Store       string             `json:"store"`
	Guarded     bool               `json:"guarded_service"`
	Mix         string             `json:"mix"`
	CPUs        int                `json:"cpus"`
	StartPhase  phase              `json:"start_phase"`
	MixedPhase  phase              `json:"mixed_phase"`
	Ops         map[string]opStats `json:"ops"`
	RSSKiB      map[string]int64   `json:"rss_kib"`
	RedisPerOp  float64            `json:"redis_commands_per_runtime_call"`
	StorePerOp  float64            `json:"store_commands_per_runtime_call"`
}

// opStats are one operation's figures.
type opStats struct {
	Count      int64   `json:"count"`
	Errors     int64   `json:"errors"`
	Throughput float64 `json:"calls_per_second"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	P999ms     float64 `json:"p999_ms"`
}

type phase struct {
	Seconds    float64 `json:"seconds"`
	Calls      int64   `json:"calls"`
	Throughput float64 `json:"calls_per_second"`
}

func main() {
	var (
		curve    = flag.String("curve", "", "comma-separated reports of the session-count curve")
		replicas = flag.String("replicas", "", "comma-separated reports of the refresh-only replica runs")
		pngOut   = flag.String("png", "", "PNG to write")
		mdFile   = flag.String("md", "", "markdown file whose <!-- load:begin --> ... <!-- load:end --> section is rewritten")
		command  = flag.String("command", "scripts/loadtest.sh", "the command that produced the reports, quoted in the markdown")
		pngLink  = flag.String("png-link", "img/load.png", "the PNG's path as the markdown links it")
	)
	flag.Parse()
	if err := run(split(*curve), split(*replicas), *pngOut, *pngLink, *mdFile, *command); err != nil {
		fmt.Fprintln(os.Stderr, "loadplot:", err)
		os.Exit(1)
	}
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func load(paths []string) ([]report, error) {
	var out []report
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func run(curvePaths, replicaPaths []string, pngOut, pngLink, mdFile, command string) error {
	curve, err := load(curvePaths)
	if err != nil {
		return err
	}
	slices.SortFunc(curve, func(a, b report) int { return a.Sessions - b.Sessions })
	reps, err := load(replicaPaths)
	if err != nil {
		return err
	}
	if pngOut != "" && len(curve) > 0 {
		if err := plotCurves(curve, pngOut); err != nil {
			return err
		}
	}
	if mdFile != "" {
		return rewrite(mdFile, markdown(curve, reps, pngLink, command))
	}
	fmt.Print(markdown(curve, reps, pngLink, command))
	return nil
}

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
}

type series struct {
	name string
	y    func(report) float64
	dash bool
}

func newPlot(title, ylabel string, curve []report, ss []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "sessions"
	p.Y.Label.Text = ylabel
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	top := 0.0
	for i, s := range ss {
		pts := make(plotter.XYs, 0, len(curve))
		for _, r := range curve {
			pts = append(pts, plotter.XY{X: float64(r.Sessions), Y: s.y(r)})
			top = max(top, s.y(r))
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		c := palette[i%len(palette)]
		line.Color, points.Color = c, c
		line.Width = vg.Points(1.5)
		if s.dash {
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(line, points)
		p.Legend.Add(s.name, line, points)
	}
	// headroom above the data for the legend, one line per series
	p.Y.Min, p.Y.Max = 0, top*(1.2+0.12*float64(len(ss)))
	return p, nil
}

func op(name string, f func(opStats) float64) func(report) float64 {
	return func(r report) float64 { return f(r.Ops[name]) }
}

func plotCurves(curve []report, out string) error {
	tp, err := newPlot("Throughput", "calls per second", curve, []series{
		{name: "mixed phase, all calls", y: func(r report) float64 { return r.MixedPhase.Throughput }},
		{name: "start phase (new sessions)", y: func(r report) float64 { return r.StartPhase.Throughput }},
	})
	if err != nil {
		return err
	}
	lat, err := newPlot("Latency", "milliseconds", curve, []series{
		{name: "guarded p50", y: op("guarded", func(o opStats) float64 { return o.P50ms })},
		{name: "guarded p99", y: op("guarded", func(o opStats) float64 { return o.P99ms }), dash: true},
		{name: "refresh p50", y: op("refresh", func(o opStats) float64 { return o.P50ms })},
		{name: "refresh p99", y: op("refresh", func(o opStats) float64 { return o.P99ms }), dash: true},
		{name: "start p50", y: op("start", func(o opStats) float64 { return o.P50ms })},
		{name: "start p99", y: op("start", func(o opStats) float64 { return o.P99ms }), dash: true},
	})
	if err != nil {
		return err
	}
	mem, err := newPlot("Resident memory at the end", "MiB", curve, []series{
		{name: "provider-host serve", y: func(r report) float64 { return float64(r.RSSKiB["serve-0"]) / 1024 }},
		{name: "guarded-kv", y: func(r report) float64 { return float64(r.RSSKiB["guarded"]) / 1024 }},
	})
	if err != nil {
		return err
	}
	const w, h = 15 * vg.Inch, 4.5 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 3, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	plots := [][]*plot.Plot{{tp, lat, mem}}
	canvases := plot.Align(plots, tiles, dc)
	for j, p := range plots[0] {
		p.Draw(canvases[0][j])
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func markdown(curve, reps []report, png, command string) string {
	var b strings.Builder
	if len(curve) > 0 {
		r0 := curve[0]
		fmt.Fprintf(&b, "Produced by `%s`: each run stands up `provider-host serve` (%d replica, %s session store), the guarded\n", command, r0.Replicas, r0.Store)
		fmt.Fprintf(&b, "key-value example and an OpenID Provider on loopback, starts every session, then runs the mix `%s`\n", r0.Mix)
		fmt.Fprintf(&b, "with %d calls in flight; the load generator shares the machine's %d CPU(s) with the services.\n\n", r0.Concurrency, r0.CPUs)
		if png != "" {
			fmt.Fprintf(&b, "![Throughput, latency and memory against sessions](%s)\n\n", png)
		}
		b.WriteString("| Sessions | Start phase, sessions/s | Mixed phase, calls/s | guarded p50 / p99 / p99.9 ms | refresh p50 / p99 / p99.9 ms | start p50 / p99 ms | serve RSS | guarded-kv RSS | Errors |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range curve {
			g, rf, st := r.Ops["guarded"], r.Ops["refresh"], r.Ops["start"]
			var errs int64
			for _, o := range r.Ops {
				errs += o.Errors
			}
			fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f | %.2f / %.2f | %.0f MiB | %.0f MiB | %d |\n",
				r.Sessions, r.StartPhase.Throughput, r.MixedPhase.Throughput,
				g.P50ms, g.P99ms, g.P999ms, rf.P50ms, rf.P99ms, rf.P999ms, st.P50ms, st.P99ms,
				float64(r.RSSKiB["serve-0"])/1024, float64(r.RSSKiB["guarded"])/1024, errs)
		}
		b.WriteString("\n")
	}
	if len(reps) > 0 {
		b.WriteString("Refresh only (`--mix refresh=1`), same sessions and concurrency, by session store and replicas:\n\n")
		b.WriteString("| Replicas | Store | Sessions | Refreshes/s | refresh p50 / p99 / p99.9 ms | Store commands per refresh | Errors |\n")
		b.WriteString("|---:|---|---:|---:|---:|---:|---:|\n")
		for _, r := range reps {
			rf := r.Ops["refresh"]
			redis := "—"
			if per := cmp.Or(r.StorePerOp, r.RedisPerOp); per > 0 {
				redis = fmt.Sprintf("%.2f", per)
			}
			fmt.Fprintf(&b, "| %d | %s | %d | %.0f | %.2f / %.2f / %.2f | %s | %d |\n",
				r.Replicas, r.Store, r.Sessions, rf.Throughput, rf.P50ms, rf.P99ms, rf.P999ms, redis, rf.Errors)
		}
		if base, ok := find(reps, 1, "memory"); ok {
			names := map[string]string{"redis": "Redis", "postgres": "PostgreSQL"}
			for _, r := range reps {
				name, shared := names[r.Store]
				if !shared {
					continue
				}
				fmt.Fprintf(&b, "\nShared state, %d replica(s) on %s against 1 replica in memory: %+.3f ms p50 per refresh (%.0f%% of the in-memory throughput).",
					r.Replicas, name, r.Ops["refresh"].P50ms-base.Ops["refresh"].P50ms, 100*r.Ops["refresh"].Throughput/base.Ops["refresh"].Throughput)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func find(rs []report, replicas int, store string) (report, bool) {
	for _, r := range rs {
		if r.Replicas == replicas && r.Store == store {
			return r, true
		}
	}
	return report{}, false
}

func rewrite(path, section string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	const begin, end = "<!-- load:begin -->", "<!-- load:end -->"
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s ... %s section", path, begin, end)
	}
	s = s[:i+len(begin)] + "\n\n" + section + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
