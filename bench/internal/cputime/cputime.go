// Package cputime reads how much CPU time processes and the machine have
// used. Process and machine figures come from /proc and are available on
// Linux only.
package cputime

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of CPU times in /proc; it is 100 on every
// Linux platform Go supports.
const clockTicks = 100

// Self returns the CPU time (user and system) this process has used.
func Self() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Process returns the CPU time (user and system) process pid has used;
// false where /proc is not available.
func Process(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces; the fields after it do
	// not. utime and stime are fields 14 and 15.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, false
	}
	return ticks(fields[11:13])
}

// Machine returns the CPU time every process of the machine has used, and
// time stolen by the hypervisor: every state of /proc/stat's cpu line but
// idle and iowait. False where /proc is not available.
func Machine() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, false
	}
	// user nice system idle iowait irq softirq steal
	states := fields[1:9]
	return ticks(append(states[:3:3], states[5:]...))
}

// ticks sums clock-tick counts.
func ticks(fields []string) (time.Duration, bool) {
	var sum int64
	for _, f := range fields {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, false
		}
		sum += n
	}
	return time.Duration(sum) * time.Second / clockTicks, true
}
