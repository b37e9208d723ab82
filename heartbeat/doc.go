// Package heartbeat is hail's liveness machinery on discovery's side: the
// pure health judge and the tracker that heartbeats many instances at
// once. The instance's side, answering, is package member.
package heartbeat
