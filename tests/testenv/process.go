package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is a daemon a test started (walstored, MinIO, a walpush
// agent): its command and a channel closed when it exited, under a lock,
// since the test's goroutines stop it and read it.
type process struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// launch starts cmd with its output appended to logFile, then polls
// ready until it holds. If the process exits first, or ready does not
// hold within wait (the process is then stopped), the error holds the
// log.
func (p *process) launch(cmd *exec.Cmd, logFile, what string, wait time.Duration, ready func() bool) error {
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %v", what, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	deadline := time.Now().Add(wait)
	for !ready() {
		select {
		case <-exited:
			b, _ := os.ReadFile(logFile)
			return fmt.Errorf("%s exited during start-up:\n%s", what, b)
		default:
		}
		if time.Now().After(deadline) {
			p.stop(syscall.SIGKILL, time.Second)
			b, _ := os.ReadFile(logFile)
			return fmt.Errorf("%s not ready after %v:\n%s", what, wait, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// stop sends sig (after SIGCONT, for a frozen process) and waits for the
// exit, killing it after grace.
func (p *process) stop(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-exited
	}
}

// send sends sig to the running process, if any.
func (p *process) send(sig syscall.Signal) {
	if pid := p.pid(); pid != 0 {
		syscall.Kill(pid, sig)
	}
}

// pid is the process id, 0 when stopped.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// cpu is the user+system CPU time the process used so far.
func (p *process) cpu() time.Duration {
	if pid := p.pid(); pid != 0 {
		return ProcessCPU(pid)
	}
	return 0
}
