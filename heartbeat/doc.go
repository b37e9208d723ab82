// Package heartbeat is hail's liveness machinery: the pure health judge,
// the tracker that heartbeats many instances at once, and the responder an
// instance runs to answer.
package heartbeat
