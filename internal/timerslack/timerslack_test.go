//go:build cgo && linux

package timerslack

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// threadSlack is the calling thread's timer slack, 0 if prctl fails.
func threadSlack() uint64 {
	v, _, errno := unix.Syscall6(unix.SYS_PRCTL, unix.PR_GET_TIMERSLACK, 0, 0, 0, 0, 0)
	if errno != 0 {
		return 0
	}
	return uint64(v)
}

// TestSlack checks that the main thread and threads the runtime creates
// later carry NS, the value the constructor sets.
func TestSlack(t *testing.T) {
	if c := cNS(); c != NS {
		t.Fatalf("the constructor sets %d ns, NS is %d", c, NS)
	}
	raw, err := os.ReadFile("/proc/self/timerslack_ns")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64); v != NS {
		t.Fatalf("main thread's timer slack %d ns, want %d", v, NS)
	}
	// Goroutines locked to their threads while others start: at least
	// some of them run on threads created after the test began.
	var wg sync.WaitGroup
	got := make([]uint64, 8)
	block := make(chan struct{})
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			got[i] = threadSlack()
			<-block
		}()
	}
	close(block)
	wg.Wait()
	for i, v := range got {
		if v != NS {
			t.Errorf("thread %d: timer slack %d ns, want %d", i, v, NS)
		}
	}
}
