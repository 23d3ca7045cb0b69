package rollout

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/shoal-lb/shoal/versions/table"
)

// sim is a whole rollout in one process: every member plans on the same
// table (rows) and applies its action; members die (keeping their last
// row, losing a fetch in progress) and come back.
type sim struct {
	t        *testing.T
	pub      table.Publication
	members  []Member
	rows     map[string]table.Row
	progress map[string]int  // fetch steps done
	started  map[string]bool // StartUpdating or a keep-serving fetch began, not yet done
	returned map[string]bool // came back during the rollout (catch-up)
}

const fetchSteps = 3 // a fetch takes this many of the member's turns

func (s *sim) alive(id string) *Member {
	for i := range s.members {
		if s.members[i].ID == id {
			return &s.members[i]
		}
	}
	return nil
}

func (s *sim) servers() int {
	n := 0
	for _, m := range s.members {
		if m.Alive && m.Serving && s.rows[m.ID].State == table.Available {
			n++
		}
	}
	return n
}

func (s *sim) write(id string, r table.Row) {
	r.Gen = s.rows[id].Gen + 1
	s.rows[id] = r
}

// step lets member id act once and checks the invariants that concern the
// step.
func (s *sim) step(id string) Action {
	before := s.servers()
	reached, _ := Threshold(s.pub, s.members, s.rows)
	a := Plan(s.pub, s.members, s.rows, id)
	r := s.rows[id]
	switch a.Kind {
	case StartUpdating:
		r.State = table.Updating
		s.write(id, r)
		s.started[id] = true
	case Fetch:
		s.started[id] = true
		if s.progress[id]++; s.progress[id] >= fetchSteps {
			delete(s.progress, id)
			if a.KeepServing {
				s.write(id, table.Row{Version: s.pub.Version, SHA256: s.pub.SHA256, State: table.Available, Holds: true})
			} else {
				s.write(id, table.Row{Version: s.pub.Version, SHA256: s.pub.SHA256, State: table.Updating, Holds: true})
			}
		}
	case Publish:
		s.write(id, table.Row{Version: s.pub.Version, SHA256: s.pub.SHA256, State: table.Available, Holds: true})
	case MarkUnavailable:
		if !reached {
			s.t.Fatalf("%s marked unavailable before the threshold", id)
		}
		r.State = table.Unavailable
		s.write(id, r)
	}
	if Done(s.pub, s.rows[id]) {
		delete(s.started, id)
		delete(s.returned, id)
	}
	if before > 0 && s.servers() == 0 {
		s.t.Fatalf("%s's %v left the group without an available server", id, a.Kind)
	}
	return a
}

// checkBatch: the members that stayed up never have more than batch
// updating at once.
func (s *sim) checkBatch() {
	n := 0
	for id := range s.started {
		if m := s.alive(id); m != nil && m.Alive && !s.returned[id] {
			n++
		}
	}
	if n > s.pub.Batch {
		s.t.Fatalf("%d members updating at once, batch %d: %v", n, s.pub.Batch, s.started)
	}
}

// checkThreshold: once the threshold is reached, every alive member still
// serving an older version is told to stop (or to update).
func (s *sim) checkThreshold() {
	if reached, _ := Threshold(s.pub, s.members, s.rows); !reached {
		return
	}
	for _, m := range s.members {
		r := s.rows[m.ID]
		if m.Alive && r.State == table.Available && !Done(s.pub, r) {
			if a := Plan(s.pub, s.members, s.rows, m.ID); a.Kind == Nothing || a.KeepServing {
				s.t.Fatalf("threshold reached but %s keeps serving v%d: %v (%s)", m.ID, r.Version, a.Kind, a.Why)
			}
		}
	}
}

// TestSimulatedRollouts: whole rollouts over 1..16 members, batch 1..4,
// with random deaths and returns, checked at every step; every alive
// member ends on the new version.
func TestSimulatedRollouts(t *testing.T) {
	runs, steps := 0, 0
	for n := 1; n <= 16; n++ {
		for batch := 1; batch <= 4; batch++ {
			for seed := int64(0); seed < 8; seed++ {
				rng := rand.New(rand.NewSource(int64(n)*1000 + int64(batch)*100 + seed))
				pub := table.Publication{Path: "/page.html", Version: 2, SHA256: sha2, Size: 2, Group: "all",
					Threshold: 5 + rng.Intn(91), Batch: batch, Publisher: fmt.Sprintf("n%d", 1+rng.Intn(n+1)), Stamp: 1}
				s := &sim{t: t, pub: pub, rows: map[string]table.Row{}, progress: map[string]int{},
					started: map[string]bool{}, returned: map[string]bool{}}
				for i := 1; i <= n; i++ {
					id := fmt.Sprintf("n%d", i)
					s.members = append(s.members, Member{ID: id, Alive: true, Serving: true})
					s.rows[id] = table.Row{Version: 1, SHA256: sha1, State: table.Available, Holds: true, Gen: 1}
				}
				deaths := seed%4 != 0 // a quarter of the runs without failures
				finished := func() bool {
					for _, m := range s.members {
						if m.Alive && !Done(pub, s.rows[m.ID]) {
							return false
						}
					}
					return true
				}
				for k := 0; ; k++ {
					if k > 20000 {
						t.Fatalf("n=%d batch=%d seed=%d: rollout stuck: %v", n, batch, seed, s.rows)
					}
					if k > 2000 { // the storm is over: everyone comes back
						deaths = false
						for i := range s.members {
							if !s.members[i].Alive {
								s.members[i].Alive, s.members[i].Serving = true, true
								s.returned[s.members[i].ID] = true
							}
						}
					}
					if finished() {
						break
					}
					m := &s.members[rng.Intn(n)]
					switch x := rng.Intn(100); {
					case deaths && x < 3 && m.Alive:
						m.Alive, m.Serving = false, false
						delete(s.progress, m.ID) // a fetch in progress is lost
					case deaths && x < 8 && !m.Alive:
						m.Alive, m.Serving = true, true
						s.returned[m.ID] = true
					case m.Alive:
						s.step(m.ID)
					}
					s.checkBatch()
					s.checkThreshold()
					steps++
				}
				runs++
			}
		}
	}
	t.Logf("%d simulated rollouts, %d steps, invariants held at every step", runs, steps)
}
