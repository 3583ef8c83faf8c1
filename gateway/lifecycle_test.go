package gateway_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// A killed client takes its processes with it; what the user detached on
// purpose (nohup, setsid) survives.
func TestNoOrphansAfterKilledClient(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 2*time.Minute)
	c := w.client(w.alice)
	sshtest.Must(t, c.SSH(ctx, "true"), nil)

	cmd := c.SSH(ctx, `sleep 1001 & nohup sleep 1002 >/dev/null 2>&1 & setsid sleep 1003 >/dev/null 2>&1 & echo started; sleep 1000`)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "started\n" {
		t.Fatalf("got %q", line)
	}
	// Wait until all four sleeps run, then kill the client hard.
	waitPS(t, w, func(ps string) bool {
		return strings.Contains(ps, "sleep 1000") && strings.Contains(ps, "sleep 1003")
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	ps := waitPS(t, w, func(ps string) bool {
		return !strings.Contains(ps, "sleep 1000") && !strings.Contains(ps, "sleep 1001")
	})
	for _, want := range []string{"sleep 1002", "sleep 1003"} {
		if !strings.Contains(ps, want) {
			t.Errorf("%s (detached on purpose) did not survive: %s", want, ps)
		}
	}
	if strings.Contains(ps, "<defunct>") {
		t.Errorf("zombies left: %s", ps)
	}
}

func waitPS(t *testing.T, w *world, ok func(string) bool) string {
	t.Helper()
	var ps string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ps = w.dockerExec("alice", "ps", "-eo", "pid,stat,args")
		if ok(ps) {
			return ps
		}
	}
	t.Fatalf("processes never reached the expected state:\n%s", ps)
	return ""
}

// A container that disappears mid-session ends the session with a message,
// not a hang; the next login gets a fresh container.
func TestContainerGoneMidSession(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	c := w.client(w.alice)
	sshtest.Must(t, c.SSH(ctx, "true"), nil)
	live := startLive(t, ctx, c)
	cs := w.containers(ctx, "alice")
	if err := w.docker.ContainerKill(ctx, cs[0].ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	if code := live.wait(30 * time.Second); code != 255 {
		t.Errorf("exit code %d, want 255", code)
	}
	if !strings.Contains(live.stderr.String(), "lost the connection to your container") {
		t.Errorf("stderr %q does not explain", live.stderr.String())
	}
	r := sshtest.Must(t, c.SSH(ctx, "echo back"), nil)
	if r.Stdout != "back\n" {
		t.Errorf("next login: %v", r)
	}
}

// When the project's image is missing the gateway builds it from the
// configured Dockerfile and shows the build on stderr.
func TestImageBuiltOnFirstLogin(t *testing.T) {
	base := testenv.Image(t)
	dir := testenv.ShortTempDir(t)
	df := filepath.Join(dir, "Dockerfile")
	if err := os.WriteFile(df, []byte("FROM "+base+"\nRUN echo built-by-gateway > /etc/sygaldry-built\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := "sygaldry-test/" + testenv.UniqueName("img") + ":1"
	w := newWorld(t, withProjectTOML(`image = "`+tag+`"`+"\n"+`dockerfile = "`+df+`"`))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		w.docker.ImageRemove(ctx, tag, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	ctx := ctxT(t, 5*time.Minute)
	r := sshtest.Run(t, w.client(w.alice).SSH(ctx, "cat /etc/sygaldry-built"), nil)
	if r.Code != 0 || r.Stdout != "built-by-gateway\n" {
		t.Fatalf("first login: %v", r)
	}
	if !strings.Contains(r.Stderr, "Step") {
		t.Errorf("no build progress on stderr: %q", r.Stderr)
	}
}
