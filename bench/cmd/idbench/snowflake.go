package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	bwsnowflake "github.com/bwmarrin/snowflake"
	"github.com/google/uuid"
	"github.com/sony/sonyflake"

	"github.com/concord-dev/concord/bench/internal/cluster"
	"github.com/concord-dev/concord/bench/internal/cputime"
	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/idgen"
)

// generator is one in-process generator; next returns an ID as a 128-bit
// big-endian number (hi, lo) so that int64 IDs and UUIDs compare alike.
type generator struct {
	name  string
	limit string
	next  func() (hi, lo uint64, err error)
}

// benchSnowflake runs every in-process generator alone, one after the
// other, on one goroutine; concord's snowflake leases its worker ID from c.
func benchSnowflake(ctx context.Context, c *cluster.Cluster, o options) ([]Result, error) {
	cl, err := client.New(ctx, client.Config{Endpoints: c.ClientAddrs()})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	sess, err := cl.NewSession(ctx)
	if err != nil {
		return nil, err
	}
	defer sess.Close(context.Background())
	snow, err := idgen.NewSnowflake(ctx, idgen.NewSessionWorkers(sess), idgen.SnowflakeConfig{})
	if err != nil {
		return nil, fmt.Errorf("concord snowflake: %w", err)
	}
	defer snow.Close(context.Background())
	sony, err := sonyflake.New(sonyflake.Settings{MachineID: func() (uint16, error) { return 1, nil }})
	if err != nil {
		return nil, fmt.Errorf("sonyflake: %w", err)
	}
	bw, err := bwsnowflake.NewNode(1)
	if err != nil {
		return nil, fmt.Errorf("bwmarrin/snowflake: %w", err)
	}
	u7 := idgen.NewUUIDv7()
	l := idgen.DefaultLayout
	gens := []generator{
		{"concord idgen.Snowflake", fmt.Sprintf("%s/s (%d/%d/%d bits, 1 ms)", num(float64(int64(1)<<l.SeqBits)*1000), l.TimeBits, l.WorkerBits, l.SeqBits),
			func() (uint64, uint64, error) { id, err := snow.Next(); return 0, uint64(id), err }},
		{"sony/sonyflake", "25,600/s (39/16/8 bits, 10 ms units: 256 per 10 ms)",
			func() (uint64, uint64, error) { id, err := sony.NextID(); return 0, id, err }},
		{"bwmarrin/snowflake", "4,096,000/s (41/10/12 bits, 1 ms)",
			func() (uint64, uint64, error) { return 0, uint64(bw.Generate().Int64()), nil }},
		{"concord idgen.UUIDv7", "none (12-bit counter, then borrows the next ms)",
			func() (uint64, uint64, error) { u := u7.New(); return split(u) }},
		{"google/uuid NewV7", "none (sub-ms bits, then runs ahead)",
			func() (uint64, uint64, error) { u, err := uuid.NewV7(); h, lo, _ := split(u); return h, lo, err }},
	}
	fmt.Printf("\n== snowflake: one generator, one goroutine, Next in a tight loop for %s (after %s warmup)\n", o.duration, o.warmup)
	var out []Result
	for _, g := range gens {
		fmt.Fprintf(os.Stderr, "snowflake: %s for %s + %s\n", g.name, o.warmup, o.duration)
		r := spin(ctx, g, o)
		r.Note = "layout limit " + g.limit
		out = append(out, r)
		if err := ctx.Err(); err != nil {
			return out, err
		}
	}
	st := snow.Stats()
	tw := table(os.Stdout)
	fmt.Fprintln(tw, "generator\tIDs/s\tns/op\tIDs\terrors\tunique+increasing\tbench cores\t layout limit per generator\t")
	for i, r := range out {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%s\t%d\t%s\t%.2f\t %s\t\n", r.System, num(r.IDsPerSec), r.NsPerOp, num(float64(r.Checked)), r.Errors, verdict(r), r.BenchCores, gens[i].limit)
	}
	tw.Flush()
	for _, r := range out {
		if r.FirstErr != "" {
			fmt.Printf("  %s: first error: %s\n", r.System, r.FirstErr)
		}
	}
	fmt.Printf("concord snowflake: worker ID %d, %d lease(s), %d reservation(s), %.1f years left in the layout\n", st.WorkerID, st.Leases, st.Reservations, st.YearsLeft)
	fmt.Printf("goal: concord snowflake >= 4.0M IDs/s: %s (%.3fM/s; the 41/10/12 layout allows at most 4.096M/s per generator)\n", met(out[0].IDsPerSec >= 4e6), out[0].IDsPerSec/1e6)
	fmt.Println("note: sonyflake's layout allows 256 IDs per 10 ms = 25,600 IDs/s per generator; it sleeps once the 10 ms is used up.")
	fmt.Println("note: IDs counts warmup and measured IDs, all checked; ns/op is of the measured phase.")
	return out, nil
}

func split(u [16]byte) (uint64, uint64, error) {
	return binary.BigEndian.Uint64(u[:8]), binary.BigEndian.Uint64(u[8:]), nil
}

// spin calls g.next in a tight loop, for o.warmup unmeasured and then
// o.duration measured, and checks that every ID is above the previous one
// (which, within one generator, also makes them unique).
func spin(ctx context.Context, g generator, o options) Result {
	r := Result{Part: "snowflake", System: g.name, Workers: 1}
	var ph, pl uint64
	first := true
	var firstErr error
	phase := func(until time.Time) (n int64) {
		for ctx.Err() == nil {
			for range 256 {
				hi, lo, err := g.next()
				if err != nil {
					if r.Errors++; firstErr == nil {
						firstErr = err
					}
					continue
				}
				if !first && (hi < ph || hi == ph && lo <= pl) {
					r.Disorder++
				}
				first, ph, pl = false, hi, lo
				n++
			}
			if !time.Now().Before(until) {
				break
			}
		}
		return n
	}
	warm := phase(time.Now().Add(o.warmup))
	cpu := cputime.Start(nil)
	start := time.Now()
	n := phase(start.Add(o.duration))
	elapsed := time.Since(start)
	r.setCores(cpu.Stop())
	r.Seconds = elapsed.Seconds()
	r.IDs, r.Calls = n, n
	r.IDsPerSec = float64(n) / elapsed.Seconds()
	r.CallsPerS = r.IDsPerSec
	if n > 0 {
		r.NsPerOp = float64(elapsed.Nanoseconds()) / float64(n)
	}
	r.Checked = warm + n
	if firstErr != nil {
		r.FirstErr = firstErr.Error()
		if errors.Is(firstErr, client.ErrWorkerLost) {
			r.FirstErr += " (worker lost)"
		}
	}
	return r
}
