package gateway_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/link"
)

// BenchmarkIdleConnections is what an idle connection costs the gateway:
// BENCH_IDLE_CONNS (default 200) OpenSSH clients, each with a session
// running `cat`, against a gateway in this process and the agent as a
// separate process (so only the gateway is counted). It reports goroutines,
// heap and stack per connection, with the agent's descriptors (fdpass) and
// with the bytes on the link.
func BenchmarkIdleConnections(b *testing.B) {
	n := 200
	if v := os.Getenv("BENCH_IDLE_CONNS"); v != "" {
		fmt.Sscan(v, &n)
	}
	for _, fd := range []bool{true, false} {
		name := "link"
		if fd {
			name = "fdpass"
		}
		b.Run(name, func(b *testing.B) {
			w := newInprocAgentProcess(b, fd)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			// One warm-up connection, so one-time state is not counted.
			if out, err := w.client.SSH(ctx, "true").CombinedOutput(); err != nil {
				b.Fatalf("warm-up: %v %s", err, out)
			}
			before := measure()
			var cmds []*exec.Cmd
			defer func() {
				for _, c := range cmds {
					c.Process.Kill()
					c.Wait()
				}
			}()
			for range n {
				c := w.client.SSH(ctx, "cat")
				in, err := c.StdinPipe()
				if err != nil {
					b.Fatal(err)
				}
				defer in.Close()
				if err := c.Start(); err != nil {
					b.Fatal(err)
				}
				cmds = append(cmds, c)
			}
			// Wait until every session reached the agent: the agent logs
			// nothing per start, so wait for the gateway's goroutines to
			// settle instead.
			after := settle(before, n)
			if dir := os.Getenv("BENCH_IDLE_PROFILE_DIR"); dir != "" {
				// go tool pprof -sample_index=inuse_space DIR/heap-NAME.pprof
				writeProfiles(b, dir, name)
			}
			perConn := func(a, b uint64) float64 { return float64(a-b) / float64(n) / 1024 }
			b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(n), "goroutines/conn")
			b.ReportMetric(perConn(after.heap, before.heap), "heap-KiB/conn")
			b.ReportMetric(perConn(after.stack, before.stack), "stack-KiB/conn")
			for range b.N {
			}
		})
	}
}

type footprint struct {
	goroutines  int
	heap, stack uint64
}

func measure() footprint {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return footprint{runtime.NumGoroutine(), m.HeapInuse, m.StackInuse}
}

// settle waits until the goroutine count stops growing (every connection
// is up) and returns the footprint then.
func settle(before footprint, n int) footprint {
	last, stable := measure(), 0
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline) && stable < 5; {
		time.Sleep(500 * time.Millisecond)
		cur := measure()
		if cur.goroutines == last.goroutines && cur.goroutines-before.goroutines >= 10*n {
			stable++
		} else {
			stable = 0
		}
		last = cur
	}
	return last
}

// newInprocAgentProcess is newInproc with the agent in its own process
// (the built sygaldry-agent, in this pid namespace), so what this process
// holds is the gateway's alone.
func newInprocAgentProcess(b *testing.B, fdpass bool) *inproc {
	b.Helper()
	dir := testenv.ShortTempDir(b)
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(dir, link.SocketName)
	cmd := exec.Command(testenv.AgentBinary(b), "serve", "--listen", sock, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "HOME="+home, "SHELL=/bin/sh")
	cmd.Dir = home
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	ns, err := link.PidNSOf(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	return serveInproc(b, dir, home, sock, ns, gateway.Options{NoFDPass: !fdpass}, &lockedBuffer{})
}

// writeProfiles saves the heap and goroutine profiles at the peak, to see
// where an idle connection's memory goes.
func writeProfiles(b *testing.B, dir, name string) {
	for _, p := range []string{"heap", "goroutine"} {
		f, err := os.Create(filepath.Join(dir, p+"-"+name+".pprof"))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup(p).WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
