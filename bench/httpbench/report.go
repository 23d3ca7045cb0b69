package httpbench

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// WriteTable prints the cells and the goals.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "shoal bench http  %s  commit %.12s  %s, %d cores, kernel %s  shoal reply path %s, prefilter %s",
		r.Date, r.Commit, r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel, r.ReplyPath, map[bool]string{true: "on", false: "off"}[r.Prefilter])
	if r.Quick {
		fmt.Fprint(w, "  (quick: a smoke test, not a measurement)")
	}
	fmt.Fprint(w, "\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "object\tmode\tsystem\treq/s\tMB/s\tp50 ms\tp99 ms\terrors\tCPU-s/1000 req\tof which workers\tmachine CPU-s/1000 req\tothers, cores\t")
	for _, c := range r.Cells {
		wk := "-"
		if c.System == Shoal && c.CPUSeconds > 0 {
			wk = fmt.Sprintf("%.0f%%", 100*c.WorkerCPUSeconds/c.CPUSeconds)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%.1f\t%.2f\t%.2f\t%d\t%.3f\t%s\t%.3f\t%.2f\t\n",
			c.Object, c.Mode, c.System, c.RPS, c.MBps, c.P50ms, c.P99ms, c.Errors, c.CPUPer1000, wk, c.MachinePer1000, c.othersCores())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nCPU-s/1000 req: the system's own processes (utime+stime of their threads). machine: all CPUs' busy time")
	fmt.Fprintln(w, "(/proc/stat: softirq, kernel threads and the client included) less other users' processes, whose CPU")
	fmt.Fprintln(w, "during the cell is the last column (docs/benchmarks.md).")
	if len(r.IdleCPU) > 0 {
		fmt.Fprint(w, "\nidle, % of a core (whole node process / its worker lcore):")
		for _, id := range []string{"n1", "n2", "n3"} {
			fmt.Fprintf(w, "  %s %.1f / %.1f", id, r.IdleCPU[id], r.IdleWorkerCPU[id])
		}
		fmt.Fprintln(w)
	}
	if len(r.Goals) > 0 {
		fmt.Fprintln(w, "\ngoals (issue 14):")
		for _, g := range r.Goals {
			mark := "met"
			if !g.Met {
				mark = "NOT met"
			}
			fmt.Fprintf(w, "  %-60s %8.2f  (%s %g)  %s\n", g.Name, g.Value, g.Kind, g.Limit, mark)
		}
	}
	return nil
}

// WriteFiles writes the report as JSON and its plot as PNG into dir, named
// by the run's date; it returns both paths.
func (r *Report) WriteFiles(dir string) (string, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	base := filepath.Join(dir, "http-"+strings.NewReplacer(":", "", "-", "").Replace(r.Date))
	if r.Quick {
		base += "-quick"
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
		return "", "", err
	}
	f, err := os.Create(base + ".png")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	if err := png.Encode(f, r.Plot()); err != nil {
		return "", "", err
	}
	return base + ".json", base + ".png", f.Close()
}

// Colors of the systems in the plot.
var systemColor = map[string]color.RGBA{
	Shoal:   {0x1f, 0x77, 0xb4, 0xff},
	HAProxy: {0xd6, 0x27, 0x28, 0xff},
	Plain:   {0x7f, 0x7f, 0x7f, 0xff},
}

// panel is one bar chart of the plot.
type panel struct {
	title  string
	object string
	mode   string
	value  func(Cell) float64
	format string
}

// Plot draws eight bar charts: MB/s for 1 MiB, requests/s for 1 KiB, and
// CPU-seconds per 1,000 requests for 1 KiB (the systems' processes, and
// the whole machine), each keep-alive and fresh.
func (r *Report) Plot() image.Image {
	panels := []panel{
		{"1 MiB keep-alive: MB/s", "1m", "keep-alive", func(c Cell) float64 { return c.MBps }, "%.0f"},
		{"1 MiB fresh conn: MB/s", "1m", "fresh", func(c Cell) float64 { return c.MBps }, "%.0f"},
		{"1 KiB keep-alive: req/s", "1k", "keep-alive", func(c Cell) float64 { return c.RPS }, "%.0f"},
		{"1 KiB fresh conn: req/s", "1k", "fresh", func(c Cell) float64 { return c.RPS }, "%.0f"},
		{"1 KiB keep-alive: CPU-s/1000 req", "1k", "keep-alive", func(c Cell) float64 { return c.CPUPer1000 }, "%.3f"},
		{"1 KiB fresh conn: CPU-s/1000 req", "1k", "fresh", func(c Cell) float64 { return c.CPUPer1000 }, "%.3f"},
		{"1 KiB keep-alive: machine CPU-s/1k", "1k", "keep-alive", func(c Cell) float64 { return c.MachinePer1000 }, "%.3f"},
		{"1 KiB fresh conn: machine CPU-s/1k", "1k", "fresh", func(c Cell) float64 { return c.MachinePer1000 }, "%.3f"},
	}
	const pw, ph, cols, top = 300, 220, 4, 40
	rows := (len(panels) + cols - 1) / cols
	img := image.NewRGBA(image.Rect(0, 0, pw*cols, top+ph*rows+30))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	title := fmt.Sprintf("shoal bench http  %s  %.10s  reply path %s, prefilter %s", r.Date[:10], r.Commit, r.ReplyPath, map[bool]string{true: "on", false: "off"}[r.Prefilter])
	if r.Quick {
		title += "  (quick)"
	}
	text(img, 10, 20, title, color.Black)
	for i, p := range panels {
		x0, y0 := (i%cols)*pw, top+(i/cols)*ph
		r.drawPanel(img, x0, y0, pw, ph, p)
	}
	// Legend.
	x := 10
	for _, s := range Systems {
		fill(img, image.Rect(x, top+ph*rows+10, x+12, top+ph*rows+22), systemColor[s])
		text(img, x+16, top+ph*rows+21, s, color.Black)
		x += 110
	}
	return img
}

func (r *Report) drawPanel(img *image.RGBA, x0, y0, w, h int, p panel) {
	text(img, x0+10, y0+16, p.title, color.Black)
	var vals []float64
	max := 0.0
	for _, s := range Systems {
		c, _ := r.Cell(s, p.object, p.mode)
		v := p.value(c)
		vals = append(vals, v)
		max = math.Max(max, v)
	}
	base := y0 + h - 30
	area := h - 70
	axis := color.RGBA{0x40, 0x40, 0x40, 0xff}
	fill(img, image.Rect(x0+20, base, x0+w-20, base+1), axis)
	bw := (w - 60) / len(Systems)
	for i, v := range vals {
		bh := 0
		if max > 0 {
			bh = int(float64(area) * v / max)
		}
		bx := x0 + 30 + i*bw
		fill(img, image.Rect(bx, base-bh, bx+bw-20, base), systemColor[Systems[i]])
		text(img, bx, base-bh-4, fmt.Sprintf(p.format, v), color.Black)
		text(img, bx, base+14, Systems[i], color.Black)
	}
}

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
}

func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: &image.Uniform{c}, Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
