// Package discovery is a hail discovery node: it takes announces and
// deregisters, heartbeats the instances it owns, judges their health,
// records transitions in hail_instances, publishes health events, and
// answers registry queries from memory.
//
// Node is wiring. Its state is held by small types that know nothing of
// it: members (the live discovery nodes and who owns which instance,
// rendezvous hashing over them), ownedSet (the instances this node
// heartbeats), recordStore (every KV read and write, revision-checked,
// batched when a round changes many records), controlDecoder and replier
// (what comes in and what goes back). The judgement of a heartbeat round,
// self-preservation included, is the pure function decideRound, tested by
// a table like heartbeat.Judge. The registry is a registry.Follower and
// the live nodes a registry.Nodes (both on the one watch, made again when
// it closes or stalls), shared with the program's console.
//
// Everything that changes the node's state runs on one loop goroutine:
// NATS callbacks, the registry's changes, membership changes and the
// tracker's rounds are handed to it, so there are no locks around that
// state and events are applied in the order they arrive.
package discovery
