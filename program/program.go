// Package program is what every hail program's main does: run until
// SIGINT or SIGTERM, and exit 1 saying why when run fails.
package program

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Run is a program: its arguments (without the program's name), its
// environment, and where it prints (help, --print-config).
type Run func(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error

// Main runs run with the process's arguments and environment; a signal
// cancels its context, which is how it drains and stops.
func Main(run Run) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
