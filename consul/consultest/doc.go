// Package consultest runs Consul's own clients against hail's Consul
// interfaces: the hashicorp/consul/api client and Prometheus's Consul
// service discovery. It is a module of its own so that their modules never
// reach the module graph of a service that imports hail's SDK.
package consultest
