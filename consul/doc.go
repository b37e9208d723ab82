// Package consul answers the read side of Consul's HTTP API and a Consul
// style DNS interface from hail's registry (PROTOCOL v1.3), so that
// software written for Consul (the hashicorp/consul/api client, Prometheus
// consul_sd_configs, consul-template, dig) finds hail's services unchanged.
//
// Both answer from a View: immutable per-service snapshots built from a
// registry.Follower when the registry changes and swapped atomically. A
// request reads one snapshot and writes bytes encoded when the snapshot
// was built: no query per request, no lock held while a response is
// written. Each snapshot carries its own index, the registry revision of
// the last change that altered that service's answer, so a blocking query
// wakes only for its own service.
package consul
