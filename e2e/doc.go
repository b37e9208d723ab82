// Package e2e tests hail as an operator runs it: the programs built as
// binaries and started as processes on loopback, docker-compose.yml checked
// and its topology run, and the real nats CLI (pinned in tools/go.mod)
// pointed at the dev stack.
package e2e
