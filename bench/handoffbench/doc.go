// Package handoffbench is `shoal bench handoff`: one 3-node lab of the
// groups preset plus a group `bench` (paths /b/*) that only n2 serves, with
// /b/1k and /b/1m in n2's content alone. From the client namespace it
// measures, on fresh connections at a fixed concurrency:
//
//   - local: /obj/1k and /obj/1m, which every node serves where it accepts;
//   - handoff: /b/1k and /b/1m accepted by n1 or n3 and moved to n2;
//   - relay: the same, with handoff.disabled on n1 and n3 (they are
//     restarted with it), so they splice to n2's relay listener;
//   - the handoff latency, freeze → ACCEPT at the origin, from the
//     origins' GET /v1/handoffs histograms before and after, once with one
//     connection at a time (nothing else running) and once under the
//     handoff throughput runs; and the time of each step on both sides
//     (the histograms' steps).
//
// Every request uses a client port whose bucket n1 or n3 owns (the table
// of GET /v1/ranges and the cluster seed, through Options.ConnValue), and
// each port once per run: a tuple's tombstone at the origin and TIME_WAIT
// at n2 would otherwise meet a later connection. Each response is checked
// (status 200, the object's exact bytes) and classified by its headers
// (X-Shoal-Handoff, X-Shoal-Relay, neither); every failure is counted by
// kind, and the nodes' own failure counters are reported beside them.
//
// It is a report, never a pass/fail test on time: figures are printed
// beside the goals of issue 12 (p99 < 500 µs; handoff ≥ 2× relay MB/s on
// 1 MiB) and their ratios. The package is pure Go: the connection value
// (a cgo package's function) is given by the caller.
package handoffbench
