package backupset

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walstore/walstore/base/units"
)

// Progress draws "what: done / total  rate  ETA" on a terminal twice a
// second; elsewhere it stays silent (the caller prints one summary line).
type Progress struct {
	w     io.Writer
	what  string
	total int64
	start time.Time
	done  atomic.Int64
	quit  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

// NewProgress starts a progress line for what, of total bytes (0:
// unknown), drawn on w twice a second when terminal is true.
func NewProgress(w io.Writer, terminal bool, what string, total int64) *Progress {
	p := &Progress{w: w, what: what, total: total, start: time.Now(), quit: make(chan struct{})}
	if terminal {
		p.wg.Go(func() {
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-p.quit:
					p.draw()
					fmt.Fprintln(p.w)
					return
				case <-t.C:
					p.draw()
				}
			}
		})
	}
	return p
}

func (p *Progress) Add(n int64) { p.done.Add(n) }

func (p *Progress) draw() {
	done := p.done.Load()
	el := time.Since(p.start).Seconds()
	rate := float64(done) / max(el, 0.001)
	line := fmt.Sprintf("\r%s: %s", p.what, units.Size(done))
	if p.total > 0 {
		line += fmt.Sprintf(" / ~%s (%.0f%%)", units.Size(p.total), 100*float64(done)/float64(p.total))
		if left := p.total - done; left > 0 && rate > 0 {
			line += fmt.Sprintf("  ETA %s", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	line += fmt.Sprintf("  %s/s   ", units.Size(int64(rate)))
	fmt.Fprint(p.w, line)
}

func (p *Progress) Stop() {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
}

// Elapsed is the time since the progress began.
func (p *Progress) Elapsed() time.Duration { return time.Since(p.start) }
