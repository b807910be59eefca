// Command idworker is a test helper for tests/e2e: "gen" runs snowflake
// generators against a cluster and writes their IDs to a file (a 0 marks a
// switch to a new generator), letting sessions expire and moving to new
// worker IDs as it goes; "verify" checks files for duplicates and for IDs
// that do not increase within a generator.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"

	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/concord-dev/concord/client"
	"github.com/concord-dev/concord/client/idgen"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: idworker gen|verify ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "verify":
		err = verify(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "idworker:", err)
		os.Exit(1)
	}
}

func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	endpoints := fs.String("endpoints", "", "comma-separated client addresses")
	count := fs.Int64("count", 1_000_000, "IDs to generate")
	out := fs.String("out", "", "output file")
	seed := fs.Uint64("seed", 1, "seed of the churn")
	_ = fs.Parse(args)
	rng := rand.New(rand.NewPCG(*seed, 99))
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer c.Close()
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var buf [8]byte
	put := func(v int64) error {
		binary.LittleEndian.PutUint64(buf[:], uint64(v))
		_, err := w.Write(buf[:])
		return err
	}
	for done := int64(0); done < *count; {
		sess, err := c.NewSession(ctx, client.WithTTL(2*time.Second), client.WithName("idworker"))
		if err != nil {
			return err
		}
		g, err := idgen.NewSnowflake(ctx, idgen.NewSessionWorkers(sess), idgen.SnowflakeConfig{Guard: 1500 * time.Millisecond})
		if err != nil {
			return err
		}
		batch := min(*count-done, 200_000+rng.Int64N(2_000_000))
		lost := false
		for i := int64(0); i < batch; i++ {
			id, err := g.Next()
			if errors.Is(err, client.ErrWorkerLost) {
				// The session expired under load: move to a new generator.
				lost = true
				break
			}
			if err != nil {
				return fmt.Errorf("generator on worker %d: %w", g.WorkerID(), err)
			}
			if err := put(id); err != nil {
				return err
			}
			done++
		}
		if lost {
			if err := put(0); err != nil {
				return err
			}
			continue
		}
		if rng.IntN(2) == 0 {
			// The session expires under the generator (a pause, a lost
			// network): it must stop issuing.
			sess.Orphan()
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err := g.Next(); errors.Is(err, client.ErrWorkerLost) {
					break
				} else if err == nil {
					// Issued before the loss was known: still unique, keep it.
					if time.Now().After(deadline) {
						return errors.New("generator kept issuing after its session expired")
					}
					time.Sleep(time.Millisecond)
					continue
				}
			}
		} else {
			_ = g.Close(ctx)
			_ = sess.Close(ctx)
		}
		if err := put(0); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// verify reads every file, checks that IDs increase between markers, then
// that no ID appears twice across files.
func verify(files []string) error {
	var all []int64
	generators := 0
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		b = b[:len(b)/8*8] // a killed writer may leave a partial record
		var last int64
		for i := 0; i < len(b); i += 8 {
			v := int64(binary.LittleEndian.Uint64(b[i:]))
			if v == 0 {
				generators++
				last = 0
				continue
			}
			if v <= last {
				return fmt.Errorf("%s: ID %d after %d from one generator", name, v, last)
			}
			last = v
			all = append(all, v)
		}
	}
	slices.Sort(all)
	for i := 1; i < len(all); i++ {
		if all[i] == all[i-1] {
			return fmt.Errorf("ID %d issued twice", all[i])
		}
	}
	_, err := fmt.Fprintf(os.Stdout, "ids %d generators %d duplicates 0\n", len(all), generators)
	return err
}
