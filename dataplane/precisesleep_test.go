package dataplane

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func timerSlack(t *testing.T) uintptr {
	v, _, errno := unix.Syscall6(unix.SYS_PRCTL, unix.PR_GET_TIMERSLACK, 0, 0, 0, 0, 0)
	if errno != 0 {
		t.Fatalf("PR_GET_TIMERSLACK: %v", errno)
	}
	return v
}

// TestPreciseSleepSlack: the command waiter's sleeps run with a 1 ns timer
// slack whatever the thread had (shoal gives every thread 500 µs,
// internal/timerslack), so a 10 µs wait is not stretched to half a
// millisecond.
func TestPreciseSleepSlack(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, 500_000, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	preciseSleep(10 * time.Microsecond)
	took := time.Since(start)
	if s := timerSlack(t); s != 1 {
		t.Fatalf("timer slack after preciseSleep: %d ns, want 1", s)
	}
	t.Logf("a 10 µs precise sleep took %v", took)
}
