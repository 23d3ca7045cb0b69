package ui

import (
	"fmt"
	"strings"
	"time"

	"github.com/shoal-lb/shoal/api"
)

// ClusterTable is the name of the cluster's table in a Snapshot.
const ClusterTable = "cluster"

// Build takes a snapshot of src with every table's runs.
func Build(src Source) api.Snapshot {
	return build(src, src.Status(), src.Groups())
}

func build(src Source, st api.Status, gs []api.GroupStatus) api.Snapshot {
	// The status (member rows with their buckets) and the cluster table's
	// intervals are read apart: when the table changed in between, read
	// both again, so one snapshot never draws two tables.
	r, ok := src.Ranges("")
	for try := 0; ok && r.TableHash != st.TableHash && try < 3; try++ {
		st = src.Status()
		r, ok = src.Ranges("")
	}
	s := api.Snapshot{Time: time.Now(), Status: st, Health: src.Health(), Stats: src.Stats()}
	if ok {
		s.Tables = append(s.Tables, view(ClusterTable, false, r, st.Members))
	}
	for _, g := range gs {
		if r, ok := src.Ranges(g.Name); ok {
			s.Tables = append(s.Tables, view(g.Name, true, r, g.Members))
		}
	}
	return s
}

// view turns a table's intervals into runs over owner indexes: the
// members' order first, then any owner the member list lacks.
func view(name string, group bool, r api.Ranges, members []api.MemberStatus) api.TableView {
	v := api.TableView{Name: name, Group: group, TableHash: r.TableHash, Members: members, Owners: []string{}, Runs: [][2]int{}}
	if v.Members == nil {
		v.Members = []api.MemberStatus{}
	}
	idx := map[string]int{}
	for _, m := range members {
		if _, ok := idx[m.ID]; !ok {
			idx[m.ID] = len(v.Owners)
			v.Owners = append(v.Owners, m.ID)
		}
	}
	for _, iv := range r.Intervals {
		i, ok := idx[iv.Owner]
		if !ok {
			i = len(v.Owners)
			idx[iv.Owner] = i
			v.Owners = append(v.Owners, iv.Owner)
		}
		n := iv.To - iv.From + 1
		if k := len(v.Runs); k > 0 && v.Runs[k-1][0] == i {
			v.Runs[k-1][1] += n
			continue
		}
		v.Runs = append(v.Runs, [2]int{i, n})
	}
	return v
}

// changeKey names what makes a stream send before its heartbeat: the
// tables' hashes and each member's state, health and availability.
func changeKey(st api.Status, gs []api.GroupStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%v|%v|%d", st.TableHash, st.Agreement, st.Holding, st.Epoch)
	for _, m := range st.Members {
		fmt.Fprintf(&b, "|%s:%s:%s:%g:%d", m.ID, m.State, m.Health, m.Availability, m.Buckets)
	}
	for _, g := range gs {
		fmt.Fprintf(&b, "|%s=%s", g.Name, g.TableHash)
	}
	return b.String()
}
