// Package report holds what the data plane reports to the control plane
// and to operators: the frame counters (a field-for-field mirror of the C
// struct sdp_counters), flow counts by state, one worker's stats and the
// entries of a flow-table dump.
//
// It is pure Go, so the admin API, the CLI, the lab and the benches can
// name these values without linking DPDK. The data plane checks at compile
// time (dataplane/cclassifier.go) that Counters has exactly the size of the
// C struct it mirrors.
package report
