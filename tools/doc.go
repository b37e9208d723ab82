// Package tools pins the command-line tools hail's Taskfile and end-to-end
// tests use, in a module of their own so that the nats CLI's dependencies
// (an older nats-server among them) stay out of hail's go.mod.
//
//	go tool -modfile=tools/go.mod nats kv ls hail_instances   # from the root, run there
//	go -C tools tool nats kv ls hail_instances                # run in tools/
//	go -C tools build -o ../bin/nats github.com/nats-io/natscli/nats
package tools
