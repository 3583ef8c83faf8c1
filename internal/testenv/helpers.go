package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// RemoveLabelled force-removes every container carrying TestLabel=id.
func RemoveLabelled(t testing.TB, cl *client.Client, id string) {
	t.Helper()
	removeWhere(t, cl, filters.Arg("label", TestLabel+"="+id))
}

// RemoveLabelledProject force-removes the managed containers of project
// (for tests that run the real daemon, which adds no test label).
func RemoveLabelledProject(t testing.TB, cl *client.Client, project string) {
	t.Helper()
	removeWhere(t, cl, filters.Arg("label", "sygaldry.managed=true"), filters.Arg("label", "sygaldry.project="+project))
}

func removeWhere(t testing.TB, cl *client.Client, match ...filters.KeyValuePair) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := cl.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(match...)})
	if err != nil {
		t.Errorf("cleanup: list: %v", err)
		return
	}
	for _, c := range cs {
		if err := cl.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove %s: %v", c.ID, err)
		}
	}
	// The containers' own networks carry the same labels.
	nws, err := cl.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(match...)})
	if err != nil {
		t.Errorf("cleanup: list networks: %v", err)
		return
	}
	for _, n := range nws {
		if err := cl.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove network %s: %v", n.Name, err)
		}
	}
}

// LogWriter sends each write to t.Log, so logs show only for failing tests.
// Lines written after the test ended are dropped (t.Log would panic), which
// is when late goroutines of the code under test still log.
func LogWriter(t testing.TB) io.Writer {
	w := &logWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return w
}

type logWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers (progress
// output, a command's stdout read while it runs).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Main runs the tests, then fails the run if a container (or network)
// labelled with one of this binary's UniqueNames is still there: every test must remove what
// it created.
func Main(m *testing.M) {
	code := m.Run()
	code = checkGoroutines(code)
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
	cs, err := cl.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", TestLabel))})
	if err != nil {
		return "" // no engine: the tests skipped or failed already
	}
	var out []string
	for _, c := range cs {
		if _, mine := issued.Load(c.Labels[TestLabel]); mine {
			out = append(out, strings.Join(c.Names, ","))
		}
	}
	nws, err := cl.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", TestLabel))})
	if err == nil {
		for _, n := range nws {
			if _, mine := issued.Load(n.Labels[TestLabel]); mine {
				out = append(out, "network "+n.Name)
			}
		}
	}
	return strings.Join(out, " ")
}

// checkGoroutines fails a passing run that left goroutines behind: every
// goroutine the gateway, the agent and the link start is owned and ends
// with its connection, channel or server (goleak waits a little for those
// still on their way out).
func checkGoroutines(code int) int {
	if code != 0 {
		return code
	}
	if err := goleak.Find(
		// The engine client's idle HTTP connections of tests that are
		// still being torn down are the engine's, not ours.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	); err != nil {
		fmt.Fprintf(os.Stderr, "goroutines left behind after the tests:\n%v\n", err)
		return 1
	}
	return code
}

// MainNoEngine is Main for packages whose tests never touch the engine:
// only the goroutine check.
func MainNoEngine(m *testing.M) {
	os.Exit(checkGoroutines(m.Run()))
}

// SeqpacketPair returns a connected pair of unix SOCK_SEQPACKET sockets,
// as between the gateway and an agent's descriptor socket; both are closed
// when the test ends.
func SeqpacketPair(t testing.TB) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "seqpacket")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// Pipe returns a pipe, closed when the test ends.
func Pipe(t testing.TB) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// WritersGone reports whether every copy of the pipe's write end is closed
// (the caller's, and any handed elsewhere): only then does the read end r
// see EOF. It waits at most 3 seconds.
func WritersGone(r *os.File) bool {
	r.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := r.Read(make([]byte, 1))
	return err == io.EOF
}
