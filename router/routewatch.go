package router

import (
	"github.com/hailsd/hail/events"
	"github.com/hailsd/hail/registry"
)

// applyRoute takes in a change of a service's route from the routes'
// follower (registry.Routes, which decodes, validates, counts and logs
// it). A stored value that is invalid changes nothing: the last good
// route stays.
func (t *Table) applyRoute(c registry.RouteChange) {
	if !c.Deleted && !c.Valid {
		return
	}
	s := t.service(c.Service)
	if c.Deleted {
		s.route, s.hasRoute = events.RouteConfig{}, false
	} else {
		s.route, s.hasRoute = c.Config, true
	}
	t.dirty[c.Service] = true
}
