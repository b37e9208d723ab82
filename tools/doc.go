// Package tools pins the command-line tools hail's Taskfile and end-to-end
// tests use, in a module of their own so that the nats CLI's dependencies
// (an older nats-server among them) stay out of hail's go.mod.
//
//	go -C tools tool nats kv ls hail_instances
//	go -C tools build -o ../bin/nats github.com/nats-io/natscli/nats
package tools
