// Package testenv gives integration tests the real parts they need: the
// Docker engine, a Debian image built without a registry, and the agent
// binary. In CI (CI=true) a missing engine fails the test; elsewhere it skips.
// With -short the Docker tier is skipped on purpose.
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// BaseImage is the Debian image built by test/image/build.sh (bash,
// coreutils, procps, python3, rsync, openssh-client, tmux, user kvothe 1000).
const BaseImage = "sygaldry/testbase:bookworm"

// TestLabel marks every container a test creates, for cleanup and leak checks.
const TestLabel = "sygaldry.test"

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Docker returns a client for the local engine, failing (CI) or skipping the
// test when the engine cannot be reached.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	if testing.Short() {
		// -short is the Docker-free tier (fake backends, in-process
		// agents): asked for explicitly, never what CI runs.
		t.Skip("-short: skipping the Docker tier")
	}
	cl, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = cl.Ping(ctx)
		cancel()
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Docker engine unavailable (required in CI): %v", err)
		}
		t.Skipf("Docker engine unavailable: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

var imageOnce struct {
	sync.Mutex
	done bool
}

// Image makes sure BaseImage exists, building it with debootstrap if needed
// (about a minute), and returns its name.
func Image(t testing.TB) string {
	t.Helper()
	Docker(t)
	imageOnce.Lock()
	defer imageOnce.Unlock()
	if imageOnce.done {
		return BaseImage
	}
	cmd := exec.Command("bash", filepath.Join(RepoRoot(), "test", "image", "build.sh"), BaseImage)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build test image: %v\n%s", err, out)
	}
	imageOnce.done = true
	return BaseImage
}

var built struct {
	sync.Mutex
	paths map[string]string // package -> binary
}

// AgentBinary builds the static sygaldry-agent once per test binary and
// returns its path.
func AgentBinary(t testing.TB) string {
	t.Helper()
	return Binary(t, "./cmd/agent", "sygaldry-agent", "CGO_ENABLED=0")
}

// Binary builds the command in pkg (relative to the repository root, e.g.
// "./cmd/gateway") as name, once per test binary, and returns its path. env
// is added to the build's environment.
func Binary(t testing.TB, pkg, name string, env ...string) string {
	t.Helper()
	built.Lock()
	defer built.Unlock()
	if p, ok := built.paths[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", name+"-bin")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", path, pkg)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	if built.paths == nil {
		built.paths = map[string]string{}
	}
	built.paths[pkg] = path
	return path
}

// ShortTempDir returns a temp directory with a short path: unix socket paths
// are limited to 108 bytes and t.TempDir() paths are long.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "syg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("cleanup %s: %v", dir, err)
		}
	})
	return dir
}

// UniqueName returns a short name unique to this test run, for projects and
// images (lowercase, starts with a letter).
func UniqueName(prefix string) string {
	name := fmt.Sprintf("%s%d%03d", prefix, os.Getpid()%100000, seq())
	issued.Store(name, true)
	return name
}

// issued holds every UniqueName of this test binary, for the leak check.
var issued sync.Map

var seqMu sync.Mutex
var seqN int

func seq() int {
	seqMu.Lock()
	defer seqMu.Unlock()
	seqN++
	return seqN
}
