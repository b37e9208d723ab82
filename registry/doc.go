// Package registry holds hail's followers, one per bucket, each on the
// one watch (package watch) and shared by the programs of a process:
//
//   - Follower: hail_instances. It decodes each entry once with the events
//     package's rules, keeps the records in a Registry, and tells its
//     subscribers what changed. A discovery node answers queries from it
//     and learns of other writers' changes through it, the router's table
//     builds its pickers from one service's records at a time, and the
//     console lists it. A discovery node also reports its own writes as
//     they complete (Put, Delete), so queries see them before their echo
//     comes back through the watch; revisions keep the two kinds of report
//     in order.
//   - Nodes: hail_nodes, the live discovery nodes, by hail's one rule of a
//     live node (a UUID key holding a valid record of that id). A discovery node divides the instances among
//     them; the console lists them.
//   - Remote: hail_remote, the other regions' registries that discovery
//     sources into this one (PROTOCOL v1.5), a Registry per region, and
//     each region's staleness from its source's activity. The router
//     routes to them when a service has no instance at home.
//   - Routes: hail_config's routes, each decoded and validated once
//     (events.DecodeRouteConfig); an invalid value is shown with why and
//     leaves the last good route in force. The router routes by them; the
//     console shows and edits them.
//
// A watch that closes, stalls or whose bucket is made again is watched
// again; a follower never stops its program.
package registry
