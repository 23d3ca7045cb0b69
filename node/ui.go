package node

import (
	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/ui"
)

// uiSource is the node as the status page (package ui) reads it: the admin
// API's own answers.
type uiSource struct{ n *Node }

var _ ui.Source = uiSource{}

func (s uiSource) Status() api.Status        { return s.n.status() }
func (s uiSource) Health() api.Health        { return s.n.health() }
func (s uiSource) Stats() api.Stats          { return s.n.stats() }
func (s uiSource) Groups() []api.GroupStatus { return s.n.groupStatus() }
func (s uiSource) Ranges(group string) (api.Ranges, bool) {
	return s.n.ranges(group)
}
