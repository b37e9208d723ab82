// Package discovery is a hail discovery node: it takes announces and
// deregisters, heartbeats the instances it owns, judges their health,
// records transitions in hail_instances, publishes health events, and
// answers registry queries from memory.
//
// Node is wiring: it builds the parts, runs the loop and the followers,
// and serves the subjects. The work is done by types that own their state
// and know nothing of the node, each in its file:
//
//   - registrations (registrations.go): announces and deregisters, a
//     burst of announces taken as one (their KV creates go out together),
//     admission control (admission.go: a bounded queue, 503s with
//     retry_after_ms, the instances waiting in it heartbeated so that a
//     v1 client does not announce again), the answers to senders;
//     repeats (repeats.go) remembers the announces already checked, so a
//     client announcing the same bytes again is not decoded again.
//   - rounds (rounds.go): a heartbeat round judged by the pure function
//     decideRound (round.go, tested by a table like heartbeat.Judge),
//     self-preservation included, and its outcome carried out; it holds
//     whether the node preserves and the last round's RTTs.
//   - queries (queries.go): hail.discovery.* answered from memory.
//   - records (records.go): every change to a record, written through
//     recordStore (store.go: all KV I/O, revision-checked, batched when a
//     round changes many records) and then taken into the registry and
//     the owned set; taking over and letting go of instances as the
//     registry and the live nodes change, and claiming those taken over.
//   - ownedSet (owned.go): the instances this node heartbeats; a tracked
//     record and its judgement change only through its methods.
//   - members (members.go): the live discovery nodes and who owns which
//     instance, rendezvous hashing over them.
//   - publisher (publish.go), controlDecoder and replier (control.go):
//     what goes out as events, what comes in, what goes back.
//
// A round's path has no way back up: node.go's loop hands it to rounds,
// which reads the owned set, decides, writes through records (store,
// then registry and owned set), and publishes; no file on the way calls
// into one above it (the store only applies the change it is handed).
//
// The registry is a registry.Follower and the live nodes a
// registry.Nodes (both on the one watch, made again when it closes or
// stalls), shared with the program's console.
//
// Everything that changes the node's state runs on one loop goroutine:
// NATS callbacks, the registry's changes, membership changes and the
// tracker's rounds are handed to it, so there are no locks around that
// state and events are applied in the order they arrive.
package discovery
