// Command concord runs a concord member (concord server) and talks to a
// cluster (concord kv, session, cluster, snapshot).
package main

import (
	"os"

	"github.com/concord-dev/concord/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
