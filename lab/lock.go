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

// acquireLock takes the lab lock, waiting while another process holds it
// until ctx ends. Holding it already (Up twice without Down) is fine.
func acquireLock(ctx context.Context, logf func(string, ...any)) error {
	lockMu.Lock()
	defer lockMu.Unlock()
	if lockLn != nil {
		return nil
	}
	said := false
	for {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: lockName, Net: "unix"})
		if err == nil {
			lockLn = ln
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("lab: taking the lab lock %s: %w", lockName, err)
		}
		if !said {
			logf("another process holds the lab (lock %s); waiting", lockName)
			said = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: another process holds the lab (abstract unix socket %s; `ss -xlp | grep shoal-lab` names it): %w", lockName, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
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
