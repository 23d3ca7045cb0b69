// Package timerslack gives every thread of the process a timer slack of
// NS (PR_SET_TIMERSLACK) before the Go runtime starts any: a program
// imports it for that effect alone (cmd/shoal does).
//
// Why: the Go runtime's sysmon thread naps 20 µs at a time (usleep)
// whenever a P has sat in a system call or the process has just woken, and
// a node's fresh connections keep it doing so: at the default slack of
// 50 µs each nap was a wake-up and a context switch of its own, 15–16 % of
// a node's Go CPU per fresh request in issue 14's seventh pass
// (docs/benchmarks.md). With a slack of NS the kernel may coalesce those
// naps with other wake-ups. Go's own timers already wait in epoll_pwait,
// whose timeout counts in milliseconds, so they fire at most NS later
// than they would. The runtime's other short sleeps lengthen as well (an
// M about to steal a running P's next goroutine sleeps 3 µs first; now up
// to NS more), which costs that M's time, not the goroutine's.
//
// Contract: with cgo on Linux, every thread the process creates starts
// with a timer slack of NS (a thread may change its own: the data plane's
// worker sets 1 ns for its idle sleeps, dataplane/worker.c, and a Go
// thread that waits for a worker's command sets 1 ns before its short
// sleeps, dataplane/commands.go preciseSleep, so that a handoff's Adopt
// and Withdraw are not stretched by NS). The slack is
// set from a C constructor, which runs before the Go runtime creates
// sysmon; Go code could reach only the threads it runs on. Without cgo
// the package does nothing.
package timerslack

// NS is the timer slack, in nanoseconds, every thread of the process
// starts with.
const NS = 500_000
