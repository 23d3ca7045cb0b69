package ranges_test

import (
	"testing"

	"github.com/shoal-lb/shoal/control/gossip"
	"github.com/shoal-lb/shoal/control/ranges"
)

// TestMixedVersionsAgree goes through the real metadata codec: three nodes,
// one held to algorithm 1 (its meta is format 1), announce what they build;
// each decodes the others' metas, negotiates and builds. All pick the same
// version and the same table; when the old node lifts its limit, all
// switch together to version 2.
func TestMixedVersionsAgree(t *testing.T) {
	weights := map[string]float64{"n1": 1, "n2": 2, "n3": 3}
	round := func(maxAlgo map[string]uint8) (version int, hash string) {
		t.Helper()
		wire := map[string][]byte{}
		for id, a := range maxAlgo {
			b, err := gossip.EncodeMeta(gossip.Meta{NodeID: id, Capacity: weights[id], Availability: weights[id], TableAlgorithm: a})
			if err != nil {
				t.Fatal(err)
			}
			if a <= 1 && b[0] != gossip.MetaVersion1 {
				t.Fatalf("%s held to algorithm 1 writes meta format %d", id, b[0])
			}
			wire[id] = b
		}
		for self := range maxAlgo {
			var supported []int
			var ms []ranges.Member
			for _, b := range wire { // this node's view: every meta, its own included
				m, err := gossip.DecodeMeta(b)
				if err != nil {
					t.Fatal(err)
				}
				supported = append(supported, m.TableAlgorithmMax())
				ms = append(ms, ranges.Member{ID: m.NodeID, Weight: m.Availability})
			}
			v := ranges.Negotiate(supported)
			tb, err := ranges.BuildV(v, 0x5eed, ms)
			if err != nil {
				t.Fatal(err)
			}
			if hash != "" && (v != version || tb.Hash != hash) {
				t.Fatalf("%s builds v%d %s, another node v%d %s", self, v, tb.Hash, version, hash)
			}
			version, hash = v, tb.Hash
		}
		return version, hash
	}
	v, mixed := round(map[string]uint8{"n1": 1, "n2": 2, "n3": 2})
	if v != ranges.AlgoV1 {
		t.Fatalf("mixed cluster builds v%d, want v1", v)
	}
	v, upgraded := round(map[string]uint8{"n1": 2, "n2": 2, "n3": 2})
	if v != ranges.AlgoV2 || upgraded == mixed {
		t.Fatalf("upgraded cluster builds v%d %s (mixed: %s), want v2 and a new table", v, upgraded, mixed)
	}
}
