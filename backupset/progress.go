package backupset

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// progress draws "what: done / total  rate  ETA" on a terminal twice a
// second; elsewhere it stays silent (the caller prints one summary line).
type progress struct {
	w     io.Writer
	what  string
	total int64
	start time.Time
	done  atomic.Int64
	quit  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func newProgress(w io.Writer, terminal bool, what string, total int64) *progress {
	p := &progress{w: w, what: what, total: total, start: time.Now(), quit: make(chan struct{})}
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

func (p *progress) add(n int64) { p.done.Add(n) }

func (p *progress) draw() {
	done := p.done.Load()
	el := time.Since(p.start).Seconds()
	rate := float64(done) / max(el, 0.001)
	line := fmt.Sprintf("\r%s: %s", p.what, human(done))
	if p.total > 0 {
		line += fmt.Sprintf(" / ~%s (%.0f%%)", human(p.total), 100*float64(done)/float64(p.total))
		if left := p.total - done; left > 0 && rate > 0 {
			line += fmt.Sprintf("  ETA %s", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	line += fmt.Sprintf("  %s/s   ", human(int64(rate)))
	fmt.Fprint(p.w, line)
}

func (p *progress) stop() {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
}
