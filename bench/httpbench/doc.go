// Package httpbench is `shoal bench http`: one run, on one machine, of the
// same HTTP load against three systems that serve the same files:
//
//   - shoal: the lab's nodes behind the VIP (direct server return);
//   - haproxy: a central HAProxy (nbthread 2) in front of three nginx
//     origin servers (one worker each), each in its own lab namespace;
//   - plain: one nginx over a plain veth, the kernel path's limit here.
//
// The client is wrk in the lab's client namespace: 1 KiB and 1 MiB objects,
// keep-alive and a fresh connection per request. Each cell reports
// requests/s, MB/s, latency p50/p99, errors, and the CPU-seconds the
// system's own processes spent per 1,000 requests (utime+stime from
// /proc/PID/stat of every process in the system's namespaces: the shoal
// nodes; HAProxy and its origins; the plain nginx). Softirq work the kernel
// does outside those processes is not counted there for any system; the
// machine figure beside it is every CPU's busy time from /proc/stat
// (softirq, kernel threads and the client included) less the CPU of the
// other processes outside the lab's namespaces, read every 100 ms while
// wrk runs, and less the CPU of the two systems not measured in the cell,
// which stay up and idle, per 1,000 requests.
//
// Contract: Run needs root, the lab tools, wrk, haproxy and nginx; it holds
// the lab lock from lab.Up to lab.Down and leaves no namespace or process
// behind. It asserts nothing about speed: a bench prints figures beside its
// peers, and the goals (docs/benchmarks.md) are ratios computed from them.
// ParseWrk, the config writers and the plot are pure and unit-tested.
package httpbench
