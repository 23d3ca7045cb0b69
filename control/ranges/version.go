package ranges

import "fmt"

// Table algorithm versions. Every node of a cluster must build with the
// same one, or their tables split the buckets differently; Negotiate picks
// it from what the members support.
const (
	// AlgoV1 is weighted rendezvous hashing per bucket: shares are right
	// only on average (the largest relative error grows with the member
	// count, about a quarter at 256 members), every change moves exactly
	// the buckets it must, and a build costs one score per member and
	// bucket.
	AlgoV1 = 1
	// AlgoV2 gives every member its largest-remainder quota exactly,
	// builds in milliseconds at hundreds of members, and moves a little
	// more than the minimum on a change (docs/protocol.md has figures).
	AlgoV2 = 2
	// AlgoLatest is the newest version this code builds.
	AlgoLatest = AlgoV2
)

// BuildV computes the table for a set of members with the given algorithm
// version. It is a pure function of (version, seed, members sorted by ID,
// weights): the input order does not matter. Members with a weight that is
// zero, negative or not finite own nothing; when none has a positive weight
// every bucket is NoOwner.
func BuildV(version int, seed uint32, members []Member) (*Table, error) {
	if version < AlgoV1 || version > AlgoLatest {
		return nil, fmt.Errorf("ranges: table algorithm version %d unknown: this build knows %d to %d", version, AlgoV1, AlgoLatest)
	}
	ms, err := sortedMembers(members)
	if err != nil {
		return nil, err
	}
	t := &Table{Algorithm: version, Members: ms}
	switch version {
	case AlgoV1:
		buildV1(seed, t)
		t.Hash = t.contentHash()
	case AlgoV2:
		buildV2(seed, t)
		t.Hash = t.contentHashV2()
	}
	return t, nil
}

// Negotiate returns the table algorithm version a cluster builds with: the
// highest version every member supports. supported holds, for every member
// of the view including this node, the highest version it announces; a
// value below AlgoV1 (a member whose metadata predates the field) counts
// as AlgoV1, and a value above AlgoLatest (a newer member) as AlgoLatest,
// the most this node can build. With no members it is AlgoV1.
//
// Every node that sees the same view computes the same version, so the
// cluster switches together when its last old member leaves or upgrades.
func Negotiate(supported []int) int {
	if len(supported) == 0 {
		return AlgoV1
	}
	v := AlgoLatest
	for _, s := range supported {
		v = min(v, max(s, AlgoV1))
	}
	return v
}
