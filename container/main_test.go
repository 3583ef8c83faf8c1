package container

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

// TestMain fails the run when a test left a container behind: every rig
// labels its containers sygaldry.test=t<pid>NNN and removes them in Cleanup.
func TestMain(m *testing.M) {
	code := m.Run()
	if leaked := leakedContainers(); leaked != "" {
		fmt.Fprintf(os.Stderr, "leaked test containers: %s\n", leaked)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func leakedContainers() string {
	cl, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return ""
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := cl.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", testenv.TestLabel))})
	if err != nil {
		return "" // no engine: the tests skipped or failed already
	}
	mine := testenv.UniqueName("t")
	mine = mine[:len(mine)-3] // t<pid>, without the sequence number
	var out []string
	for _, c := range cs {
		if v := c.Labels[testenv.TestLabel]; strings.HasPrefix(v, mine) {
			out = append(out, strings.Join(c.Names, ","))
		}
	}
	return strings.Join(out, " ")
}
