package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// lockName is an abstract unix socket name. Binding it is the lab lock: the
// kernel releases it when the holder exits, however it dies, and it leaves no
// file behind. `go test ./...` runs packages in parallel, so two packages
// using the lab would otherwise tear down each other's namespaces.
const lockName = "@shoal-lab-lock"

var (
	lockMu sync.Mutex
	lockLn *net.UnixListener
)

// queueName is the lock's turnstile: a process must hold it to take the
// lab lock, and holds it while it waits. A holder that releases the lab
// and at once wants it again (the next test of a package) must pass the
// turnstile too, which a waiter holds: so a waiting process gets the lab
// next instead of losing every race to a busy package (seen in CI: the lab
// package's tests starved for two minutes behind the end-to-end suite).
const queueName = "@shoal-lab-queue"

// acquireLock takes the lab lock, waiting while another process holds it
// until ctx ends. Holding it already (Up twice without Down) is fine.
func acquireLock(ctx context.Context, logf func(string, ...any)) error {
	lockMu.Lock()
	defer lockMu.Unlock()
	if lockLn != nil {
		return nil
	}
	said := false
	wait := func() error {
		if !said {
			logf("another process holds the lab (lock %s); waiting", lockName)
			said = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: another process holds the lab (abstract unix socket %s; `ss -xlp | grep shoal-lab` names it): %w", lockName, ctx.Err())
		case <-time.After(20 * time.Millisecond):
			return nil
		}
	}
	var queue *net.UnixListener
	for queue == nil {
		ln, err := bindAbstract(queueName)
		if err != nil {
			return err
		}
		if queue = ln; queue == nil {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	defer queue.Close()
	for {
		ln, err := bindAbstract(lockName)
		if err != nil {
			return err
		}
		if ln != nil {
			lockLn = ln
			return nil
		}
		if err := wait(); err != nil {
			return err
		}
	}
}

// bindAbstract binds an abstract unix socket: nil, nil when another process
// has it.
func bindAbstract(name string) (*net.UnixListener, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err == nil {
		return ln, nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, nil
	}
	return nil, fmt.Errorf("lab: taking the lab lock %s: %w", name, err)
}

func releaseLock() {
	lockMu.Lock()
	defer lockMu.Unlock()
	if lockLn != nil {
		lockLn.Close()
		lockLn = nil
	}
}

// Hold takes the lab lock for a test that needs the machine's shared lab
// resources without building a lab (hugepages, DPDK processes: the
// container cluster), waiting while another process holds it. release
// gives it back; Down releases it too.
func Hold(ctx context.Context, logf func(string, ...any)) (release func(), err error) {
	if err := acquireLock(ctx, logf); err != nil {
		return nil, err
	}
	return releaseLock, nil
}
