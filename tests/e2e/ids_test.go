package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHundredMillionUniqueIDs runs 8 snowflake generators at a time in
// separate processes against a 3-member cluster, in two waves (the second
// wave restarts them), while their sessions expire and they move to new
// worker IDs; one process is killed with SIGKILL midway. A checker process
// then verifies 100 million IDs (10 million with -short): no duplicate, and
// every generator's IDs strictly increase.
func TestHundredMillionUniqueIDs(t *testing.T) {
	total := int64(100_000_000)
	if testing.Short() {
		total = 10_000_000
	}
	worker := filepath.Join(filepath.Dir(binary), "idworker")
	build := exec.Command("go", "build", "-o", worker, "./idworker")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	require.NoError(t, build.Run())

	c := startCluster(t, 3)
	newClient(t, c.endpoints())
	dir := t.TempDir()
	eps := strings.Join(c.endpoints(), ",")
	const perWave, waves = 8, 2
	// One process is killed; the others alone still produce the total.
	per := total/(perWave*waves-1) + 1
	var files []string
	var generated int64
	for wave := 0; wave < waves; wave++ {
		var wg sync.WaitGroup
		errs := make([]error, perWave)
		for i := 0; i < perWave; i++ {
			file := filepath.Join(dir, fmt.Sprintf("ids-%d-%d", wave, i))
			files = append(files, file)
			cmd := exec.Command(worker, "gen", "--endpoints", eps, "--count", fmt.Sprint(per), "--out", file, "--seed", fmt.Sprint(wave*100+i))
			out := &strings.Builder{}
			cmd.Stdout, cmd.Stderr = out, out
			require.NoError(t, cmd.Start())
			killed := wave == 0 && i == 0
			if !killed {
				generated += per
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if killed {
					time.Sleep(2 * time.Second)
					_ = cmd.Process.Signal(syscall.SIGKILL)
					_ = cmd.Wait()
					return
				}
				if err := cmd.Wait(); err != nil {
					errs[i] = fmt.Errorf("%v: %s", err, out)
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
	}
	out, err := exec.Command(worker, append([]string{"verify"}, files...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var ids, gens, dups int64
	_, err = fmt.Sscanf(string(out), "ids %d generators %d duplicates %d", &ids, &gens, &dups)
	require.NoError(t, err, "%s", out)
	require.GreaterOrEqual(t, ids, generated, "every completed generator's IDs were checked")
	require.GreaterOrEqual(t, ids, total)
	require.GreaterOrEqual(t, gens, int64(perWave*waves))
	t.Logf("checked %d IDs from %d generators: no duplicate, each generator increasing", ids, gens)
}
