package bench

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system) this process has used.
// Every part of a run (servers, discovery, router, instances, callers) is
// in the process, so the CPU a turn used, over its requests, is what one
// request costs the whole region: a figure that holds when the machine is
// busy with other work, where requests per second only say how much of
// the machine the run was given.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
