package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Paths of the status page and its live feed (package ui serves them).
const (
	// PathUI is the status page: HTML, JavaScript and CSS embedded in the
	// binary, nothing fetched from elsewhere.
	PathUI = "/"
	// PathEvents is a server-sent-events stream of Snapshot: one event at
	// once, then one whenever a table hash or a member's state changes, and
	// at least one a second.
	PathEvents = "/v1/events"
	// PathSnapshot is one Snapshot as plain JSON, with every table's runs.
	PathSnapshot = "/v1/snapshot"
)

// EventSnapshot is the SSE event name of a Snapshot on PathEvents.
const EventSnapshot = "snapshot"

// Snapshot is what the status page draws: the node's status, health and
// data-plane counters, and every range table it runs. Counters are totals
// since the node started; a reader computes rates from two snapshots and
// their Time.
type Snapshot struct {
	// Seq counts the events of one stream from 1 (0 on PathSnapshot).
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Status, Health and Stats are GET /v1/status, /v1/health, /v1/stats.
	Status Status `json:"status"`
	Health Health `json:"health"`
	Stats  Stats  `json:"stats"`
	// Tables is the cluster table first, then each group's in config order.
	Tables []TableView `json:"tables"`
}

// TableView is one range table of 65,536 buckets in run-length form.
type TableView struct {
	// Name is "cluster" or the group's name.
	Name      string `json:"name"`
	Group     bool   `json:"group"`
	TableHash string `json:"table_hash"`
	// Members are the table's members with their buckets and share.
	Members []MemberStatus `json:"members"`
	// Owners maps an owner index in Runs to a member ID.
	Owners []string `json:"owners"`
	// Runs are the table's intervals in bucket order, each [owner index,
	// number of buckets]; their lengths add up to 65,536. On PathEvents a
	// table whose hash this stream already sent comes without runs and
	// with Unchanged set: the reader keeps the runs it has.
	Runs      [][2]int `json:"runs,omitempty"`
	Unchanged bool     `json:"unchanged,omitempty"`
}

// ReadSnapshots reads a PathEvents stream from r and calls fn with each
// snapshot, its tables complete: a table sent Unchanged gets the runs and
// owners of its last full copy. It returns nil when fn returns false, and
// otherwise the error that ended the stream (io.EOF at its end).
func ReadSnapshots(r io.Reader, fn func(Snapshot) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20) // a table's runs reach ~300 KB
	last := map[string]TableView{}
	var event string
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if event == EventSnapshot && len(data) > 0 {
				var s Snapshot
				if err := json.Unmarshal(data, &s); err != nil {
					return fmt.Errorf("event %s: %w", event, err)
				}
				for i := range s.Tables {
					t := &s.Tables[i]
					key := t.Name
					if t.Group {
						key = "group/" + key
					}
					if t.Unchanged {
						if old, ok := last[key]; ok && old.TableHash == t.TableHash {
							t.Owners, t.Runs = old.Owners, old.Runs
						}
					} else {
						last[key] = *t
					}
				}
				if !fn(s) {
					return nil
				}
			}
			event, data = "", nil
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}
