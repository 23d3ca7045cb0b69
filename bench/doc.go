// Package bench holds shoal's benchmarks. They print figures beside the
// limit measured in the same run (ratios), never pass or fail on time: the
// machines they run on are shared and noisy.
//
// Dataplane measures the C workers' per-packet code on one lcore over a
// net_null port whose mempool was pre-filled with frame templates
// (pktgen-style: the frames are built once, the port replays them). The
// limit is the bare rx → free loop over the same port and pool.
package bench
