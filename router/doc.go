// Package router routes requests to one healthy instance of a service.
//
// Table is the routing table: per service, the route in force and one
// Picker per endpoint over the instances that may take requests, built
// from a registry.Follower of hail_instances (a change rebuilds only its
// service, from that service's records), health events (which can only
// take an instance out, sooner) and hail_config routes, and published as
// an immutable snapshot that lookups read without locks. Each selection
// strategy is one Picker in a file of its own (weighted.go, hash.go, ...).
// The forwarder makes its own request to the picked instance and retries
// on no-responders within a retry budget, ejecting instances that do not
// answer. Router serves P.route.> with them; Client does the same in a
// caller's process.
//
// RouteDefaults, Ejection and Config are the router program's config
// sections; DefaultRoute, DefaultEjection and DefaultConfig hold the
// defaults, in one place.
package router
