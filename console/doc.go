// Package console is the operator's page of a hail region and the JSON
// API behind it: services, instances, discovery nodes, routes and each
// instance's health history, kept live from the registry (a
// registry.Follower, shared with the discovery node of the same process),
// hail_nodes, hail_config and the health and node events, and pushed to the
// page over server-sent events. Its writes (routes, drains) go to
// hail_config exactly as `nats kv put` would, revision-checked.
//
// It is its own package so that programs without a page (the router, the
// example service) link neither it, nor html/template, nor its embedded
// assets: admin keeps the probes every program serves.
package console
