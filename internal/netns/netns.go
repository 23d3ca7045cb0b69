// Package netns runs code inside a named network namespace
// (/run/netns/NAME, as ip-netns(8) makes them).
//
// Contract: Run calls fn on an OS thread that has joined the namespace.
// Sockets fn creates belong to that namespace for their whole life,
// wherever they are used afterwards. The thread is never unlocked, so the
// Go runtime destroys it when fn returns and no other goroutine ever runs
// in the foreign namespace; fn must not start goroutines that expect to
// be in it.
package netns

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// JoinError is Run failing to enter the namespace; fn did not run. Any
// other error Run returns is fn's own.
type JoinError struct{ Err error }

func (e *JoinError) Error() string { return e.Err.Error() }
func (e *JoinError) Unwrap() error { return e.Err }

// Run runs fn in network namespace name (see the package contract).
func Run(name string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // deliberately never unlocked, see above
		f, err := os.Open("/run/netns/" + name)
		if err != nil {
			done <- &JoinError{fmt.Errorf("namespace %s: %w", name, err)}
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			done <- &JoinError{fmt.Errorf("setns %s: %w", name, err)}
			return
		}
		done <- fn()
	}()
	return <-done
}
