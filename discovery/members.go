package discovery

import (
	"maps"
	"slices"

	"github.com/hailsd/hail/events"
)

// members is the set of live discovery nodes (hail_nodes), this node
// always among them whatever its entry says (it is running), and the
// ownership of instances over that set. It does no I/O.
type members struct {
	self string
	set  map[string]bool
	ids  []string // set, sorted, for events.Owner
}

func newMembers(self string) *members {
	return &members{self: self, set: map[string]bool{self: true}, ids: []string{self}}
}

// apply takes in one hail_nodes change: node id is live or gone.
func (m *members) apply(id string, live bool) (joined, left []string) {
	if id == m.self {
		return nil, nil
	}
	next := maps.Clone(m.set)
	if live {
		next[id] = true
	} else {
		delete(next, id)
	}
	return m.replace(next)
}

// replace makes live (plus this node) the live nodes.
func (m *members) replace(live map[string]bool) (joined, left []string) {
	next := maps.Clone(live)
	if next == nil {
		next = map[string]bool{}
	}
	next[m.self] = true
	for id := range m.set {
		if !next[id] {
			left = append(left, id)
		}
	}
	for id := range next {
		if !m.set[id] {
			joined = append(joined, id)
		}
	}
	if len(joined) > 0 || len(left) > 0 {
		m.set = next
		m.ids = slices.Sorted(maps.Keys(next))
	}
	return joined, left
}

// owner is the node that owns instance id among the live nodes.
func (m *members) owner(id string) string { return events.Owner(m.ids, id) }

// owns reports whether this node owns instance id.
func (m *members) owns(id string) bool { return m.owner(id) == m.self }

func (m *members) len() int { return len(m.ids) }
