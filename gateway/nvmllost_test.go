package gateway_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/workspace"
)

// A container that lost its GPUs while running, through the real OpenSSH
// client and the real engine. Its /dev/nvidia0 and /dev/nvidiactl are
// host device nodes (195:0, 195:255) bind-mounted past its device cgroup,
// so the agent finds them denied (EPERM), as after a host daemon-reload.
// While alice has a session in it, her next interactive login starts with
// the one-line notice (a command with a pty does not get it), and the
// container is kept; once she is gone, the next login makes it anew.
func TestNVMLLostThroughOpenSSH(t *testing.T) {
	const uuid = "GPU-7e57a11c-0000-4000-8000-000000000002"
	dir := testenv.ShortTempDir(t)
	var mounts []string
	for _, n := range []struct {
		name  string
		minor int
	}{{"nvidia0", 0}, {"nvidiactl", 255}} {
		p := filepath.Join(dir, n.name)
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o666, 195<<8|n.minor); err != nil {
			t.Skipf("cannot make a device node here: %v", err)
		}
		if err := syscall.Chmod(p, 0o666); err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, fmt.Sprintf("{ source = %q, target = %q }", p, "/dev/"+n.name))
	}
	w := newWorld(t,
		withProjectTOML("mounts = ["+strings.Join(mounts, ", ")+"]"),
		withManager(func(o *workspace.Options) {
			// The lease label a container made with this GPU carries; the
			// project asks the engine for none (this host has no GPU).
			o.Labels[workspace.LabelGPUs] = uuid
			o.Labels[workspace.LabelGPUMode] = config.GPUShared
			o.GPUs = oneGPU(uuid)
		}))
	ctx := ctxT(t, 3*time.Minute)
	c := w.client(w.alice)
	name := workspace.ContainerName(w.project, "alice")

	live := startLive(t, ctx, c) // makes the container and stays inside
	first := w.containers(ctx, "alice")
	if len(first) != 1 {
		t.Fatalf("%d containers", len(first))
	}

	r := sshtest.Run(t, c.SSH(ctx, "-tt"), []byte("echo marker-$((6*7)); exit\n"))
	lines := strings.Split(r.Stdout, "\n")
	if r.Code != 0 || lines[0] != "sygaldry: "+workspace.NVMLLostNotice+"\r" {
		t.Fatalf("interactive login: exit %d, first line %q\nstdout %q\nstderr %q", r.Code, lines[0], r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "marker-42") {
		t.Errorf("the shell did not run after the notice: %q", r.Stdout)
	}
	if r := sshtest.Run(t, c.SSH(ctx, "-tt", "--", "echo hi"), nil); r.Code != 0 || r.Stdout != "hi\r\n" {
		t.Errorf("a command with a pty: exit %d, stdout %q", r.Code, r.Stdout)
	}
	if r := sshtest.Run(t, c.SSH(ctx, "echo hi"), nil); r.Code != 0 || r.Stdout != "hi\n" {
		t.Errorf("a command: exit %d, stdout %q", r.Code, r.Stdout)
	}
	if cs := w.containers(ctx, "alice"); len(cs) != 1 || cs[0].ID != first[0].ID {
		t.Fatal("recreated while alice was inside")
	}

	live.cmd.Process.Kill()
	live.wait(30 * time.Second)
	for deadline := time.Now().Add(30 * time.Second); w.mgr.InUse(name) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the gateway still holds the container after the session ended")
		}
	}
	r = sshtest.Run(t, c.SSH(ctx, "true"), nil)
	if r.Code != 0 || !strings.Contains(r.Stderr, "Container "+name+" lost access to its GPUs; recreating it ...") {
		t.Errorf("login with nobody inside: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if cs := w.containers(ctx, "alice"); len(cs) != 1 || cs[0].ID == first[0].ID {
		t.Errorf("not recreated with nobody inside: %d containers", len(cs))
	}
}
