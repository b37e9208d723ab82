package router

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/hailsd/hail/events"
)

// Attempts caught in a closed connection (PROTOCOL v1.4).
//
// A request the server delivered to an instance before its connection
// closed gets neither an answer nor a no-responders notice: left alone, it
// waits for its timeout (a 504 seconds later, while healthy instances
// idle). The owner's critical event with reason "disconnected" says that
// connection is gone. The table hands the instances it names to the
// forwarder once it has published views without them, and the forwarder
// ends at once every attempt still waiting on one: a timeout known early,
// retried on another instance where a timeout would be (the route's
// retry_on_timeout, its retries and budget), else answered 504 at once.
// Not retried otherwise, because the instance may have acted on the
// request before it died: PROTOCOL v1.4, "Requests already inside the
// killed process get 504 as in v1 unless the route has retry_on_timeout".
//
// Nothing here runs per request but one atomic load and one comparison
// under the lock the forwarder takes anyway.

// instanceRef names one instance of one service.
type instanceRef struct{ service, id string }

// closedConns is the forwarder's memory of recent closings, under its mu
// (epoch is also read without it).
type closedConns struct {
	// epoch counts the closings handed over; an attempt notes it before
	// it picks, so that it can tell a closing that came between its pick
	// and its registering as pending (it picked from an older view).
	epoch atomic.Uint64
	// at is the epoch each instance was last closed in, for closedKeep
	// epochs.
	at map[instanceRef]uint64
}

// closedKeep bounds what closedConns remembers. An attempt takes
// microseconds from its pick to being pending; should one span more
// closings than this, its request goes out and ends as before the
// closings were known, by no responders or its timeout.
const closedKeep = 64

// since reports whether the instance was closed after epoch e (so an
// attempt that noted e may have picked it from a view that still held
// it). Under the forwarder's mu.
func (cc *closedConns) since(e uint64, service, id string) bool {
	if cc.epoch.Load() == e {
		return false
	}
	at, ok := cc.at[instanceRef{service, id}]
	return ok && at > e
}

// closeAttempts ends the attempts waiting on the instances of gone, whose
// connections closed. The table calls it from its loop once the views
// without them are published, so a retry picks elsewhere.
func (f *forwarder) closeAttempts(gone map[instanceRef]struct{}) {
	var caught []*call
	f.mu.Lock()
	e := f.closed.epoch.Add(1)
	for ref := range gone {
		f.closed.at[ref] = e
	}
	for ref, at := range f.closed.at {
		if e-at >= closedKeep {
			delete(f.closed.at, ref)
		}
	}
	for token, c := range f.pending {
		if _, ok := gone[instanceRef{c.service, c.target.ID}]; ok {
			delete(f.pending, token)
			caught = append(caught, c)
		}
	}
	f.mu.Unlock()
	if len(caught) == 0 {
		return
	}
	f.log.Info("attempts ended early: their instance's connection closed", "attempts", len(caught), "instances", len(gone))
	now := time.Now()
	for _, c := range caught {
		c.timer.Stop() // if it fired, expire finds nothing pending
		f.unanswered(c, connClosed, now)
	}
}

// closings collects, in the table's loop, the instances whose owner said
// their connection closed, until the views without them are published.
type closings struct {
	gone map[instanceRef]struct{}
	// notify is the forwarder's closeAttempts; nil (a Client's table):
	// nothing waits on an attempt here.
	notify func(map[instanceRef]struct{})
}

// disconnected reports whether a health event's reason is the owner's
// word that the instance's connection closed.
func disconnected(reason string) bool {
	return strings.HasPrefix(reason, events.DisconnectReason(""))
}

func (cl *closings) add(service, id string) {
	if cl.notify == nil {
		return
	}
	if cl.gone == nil {
		cl.gone = map[instanceRef]struct{}{}
	}
	cl.gone[instanceRef{service, id}] = struct{}{}
}

// flush hands the collected instances over; after a publish.
func (cl *closings) flush() {
	if len(cl.gone) == 0 {
		return
	}
	cl.notify(cl.gone)
	cl.gone = nil
}
