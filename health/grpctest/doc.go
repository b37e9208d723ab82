// Package grpctest checks health.GRPC against grpc-go's own server and
// health service. It is a module of its own so that grpc-go (and the
// OpenTelemetry and cloud modules its go.mod requires) stays out of
// hail's go.mod. .ci/run runs it: go -C health/grpctest test ./...
package grpctest
