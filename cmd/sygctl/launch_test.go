package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	dcontainer "github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/workspace"
)

var built struct {
	once sync.Once
	dir  string
	err  error
}

// binDir builds sygctl once and puts the agent next to it, as `make build`
// lays out bin/.
func binDir(t *testing.T) string {
	t.Helper()
	agent := testenv.AgentBinary(t)
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "sygctl-bin")
		if err != nil {
			built.err = err
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "sygctl"), "./cmd/sygctl")
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = errors.New(string(out))
			return
		}
		data, err := os.ReadFile(agent)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "sygaldry-agent"), data, 0o755)
		}
		built.dir, built.err = dir, err
	})
	if built.err != nil {
		t.Fatalf("build sygctl: %v", built.err)
	}
	return built.dir
}

// launchRig is one launcher setup: project, storage, state dir, label.
type launchRig struct {
	t       *testing.T
	cl      *client.Client
	bin     string
	image   string
	project string
	root    string
	state   string
	testID  string
}

func newLaunchRig(t *testing.T) *launchRig {
	t.Helper()
	cl := testenv.Docker(t)
	r := &launchRig{t: t, cl: cl, image: testenv.Image(t), bin: binDir(t), project: testenv.UniqueName("l"), testID: testenv.UniqueName("t")}
	dir := testenv.ShortTempDir(t)
	r.root, r.state = dir+"/s", dir+"/st"
	t.Cleanup(func() { testenv.RemoveLabelled(t, cl, r.testID) })
	return r
}

func (r *launchRig) cmd(args ...string) *exec.Cmd {
	full := append([]string{"launch", "--state-dir", r.state, "--user", "tester", "--label", testenv.TestLabel + "=" + r.testID}, args...)
	cmd := exec.Command(filepath.Join(r.bin, "sygctl"), full...)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SYGALDRY_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env,
		"SYGALDRY_PROJECT_ID="+r.project,
		"SYGALDRY_IMAGE="+r.image,
		"SYGALDRY_GPU=false",
		"SYGALDRY_STORAGE_ROOT="+r.root,
	)
	return cmd
}

// run runs sygctl launch with stdin and returns stdout, stderr, exit code.
func (r *launchRig) run(stdin string, args ...string) (string, string, int) {
	r.t.Helper()
	cmd := r.cmd(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		r.t.Fatalf("run sygctl: %v", err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

func TestLaunchExec(t *testing.T) {
	r := newLaunchRig(t)
	name := workspace.ContainerName(r.project, "tester")

	stdout, stderr, code := r.run("", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
	if code != 7 || stdout != "out\n" {
		t.Errorf("exit %d, stdout %q (stderr %q)", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "Creating container "+name+" from "+r.image) || !strings.HasSuffix(stderr, "err\n") {
		t.Errorf("stderr = %q", stderr)
	}

	// Reused: quiet, fast; signals come back as 128+N; arguments stay words.
	stdout, stderr, code = r.run("", "sh", "-c", "kill -TERM $$")
	if code != 143 || stdout != "" || stderr != "" {
		t.Errorf("signal: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, _, code = r.run("", "--", "printf", `%s|\n`, "a b", "c'd", "$HOME", "")
	if code != 0 || stdout != "a b|\nc'd|\n$HOME|\n|\n" {
		t.Errorf("quoting: exit %d, stdout %q", code, stdout)
	}
	// stdin is passed through to EOF; no pty without a terminal.
	stdout, _, code = r.run("line one\nline two\n", "sh", "-c", "cat; test -t 0 || echo no-tty")
	if code != 0 || stdout != "line one\nline two\nno-tty\n" {
		t.Errorf("stdin: exit %d, stdout %q", code, stdout)
	}
	// No command: a login shell reading stdin.
	stdout, _, code = r.run("id -un; pwd; exit 4\n")
	if code != 4 || stdout != "kvothe\n/home/kvothe\n" {
		t.Errorf("shell: exit %d, stdout %q", code, stdout)
	}
}

// TestLaunchWorkspace: --workspace DIR is the container's /workspace, where
// the command and the shell start; the mount is part of the spec, so the
// same project without it gets a container that starts in $HOME.
func TestLaunchWorkspace(t *testing.T) {
	r := newLaunchRig(t)
	ws := testenv.ShortTempDir(t)
	if err := os.WriteFile(filepath.Join(ws, "marker"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := r.run("", "--workspace", ws, "--", "sh", "-c", `pwd; cat marker; echo "$SYGALDRY_WORKSPACE"`)
	if code != 0 || stdout != "/workspace\nfrom the host\n/workspace\n" {
		t.Errorf("command: exit %d, stdout %q (stderr %q)", code, stdout, stderr)
	}
	stdout, _, code = r.run("pwd\n", "--workspace", ws)
	if code != 0 || stdout != "/workspace\n" {
		t.Errorf("shell: exit %d, stdout %q", code, stdout)
	}
	// Without the flag the spec differs: the running container is kept
	// and says so; once stopped, it is recreated without the mount and
	// starts in $HOME as before.
	_, stderr, _ = r.run("", "true")
	if !strings.Contains(stderr, "runs with an older configuration") {
		t.Errorf("without --workspace, running: stderr %q", stderr)
	}
	name := workspace.ContainerName(r.project, "tester")
	timeout := 1
	if err := r.cl.ContainerStop(context.Background(), name, dcontainer.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatalf("stop %s: %v", name, err)
	}
	stdout, stderr, code = r.run("", "--", "sh", "-c", "pwd; test -e /workspace/marker || echo no-marker")
	if code != 0 || stdout != "/home/kvothe\nno-marker\n" {
		t.Errorf("without --workspace: exit %d, stdout %q (stderr %q)", code, stdout, stderr)
	}
}

// TestLaunchSameContainerAsGateway: the launcher's container is exactly
// what BuildSpec gives for the same input, and the gateway's Manager,
// asked for the same (project, user), takes it as it is.
func TestLaunchSameContainerAsGateway(t *testing.T) {
	r := newLaunchRig(t)
	if _, stderr, code := r.run("", "true"); code != 0 {
		t.Fatalf("launch: exit %d\n%s", code, stderr)
	}
	ctx := context.Background()
	name := workspace.ContainerName(r.project, "tester")
	ci, err := r.cl.ContainerInspect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	ii, err := r.cl.ImageInspect(ctx, r.image)
	if err != nil {
		t.Fatal(err)
	}
	defaults, err := config.Parse("", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := config.Resolved{Name: r.project, Settings: defaults.Defaults}
	p.Image = r.image
	labels := map[string]string{testenv.TestLabel: r.testID}
	agent := filepath.Join(r.bin, "sygaldry-agent")
	info, err := r.cl.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := workspace.BuildSpec(workspace.SpecInput{
		Project: p, User: "tester", StorageRoot: r.root,
		LinkDir: workspace.LinkDir(r.state, name), AgentPath: agent,
		AgentKey: workspace.AgentKeyPath(r.state, name),
		ImageID:  ii.ID, DisableGPUs: true, Labels: labels,
		Host: workspace.HostInfo{CPUs: info.NCPU, Memory: info.MemTotal},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The agent key label is the container's own (made at create).
	if !strings.HasPrefix(ci.Config.Labels[workspace.LabelAgentKey], "ssh-ed25519 ") {
		t.Errorf("agent key label = %q", ci.Config.Labels[workspace.LabelAgentKey])
	}
	gotLabels := maps.Clone(ci.Config.Labels)
	delete(gotLabels, workspace.LabelAgentKey)
	// Docker shows the image's own labels on the container too.
	if ii.Config != nil {
		for k, v := range ii.Config.Labels {
			if _, ours := want.Config.Labels[k]; !ours && gotLabels[k] == v {
				delete(gotLabels, k)
			}
		}
	}
	if !maps.Equal(gotLabels, want.Config.Labels) {
		t.Errorf("labels = %v\nwant %v", ci.Config.Labels, want.Config.Labels)
	}
	if !reflect.DeepEqual(ci.HostConfig.Mounts, want.HostConfig.Mounts) {
		t.Errorf("mounts = %+v\nwant %+v", ci.HostConfig.Mounts, want.HostConfig.Mounts)
	}
	if ci.Config.User != want.Config.User || ci.Config.Hostname != want.Config.Hostname ||
		!reflect.DeepEqual(ci.Config.Env[:len(want.Config.Env)], want.Config.Env) ||
		len(ci.HostConfig.DeviceRequests) != 0 || ci.HostConfig.ShmSize != want.HostConfig.ShmSize ||
		!reflect.DeepEqual(ci.HostConfig.Ulimits, want.HostConfig.Ulimits) ||
		ci.HostConfig.NanoCPUs != want.HostConfig.NanoCPUs || ci.HostConfig.Memory != want.HostConfig.Memory ||
		!reflect.DeepEqual(ci.HostConfig.PidsLimit, want.HostConfig.PidsLimit) || ci.HostConfig.NetworkMode != want.HostConfig.NetworkMode ||
		!reflect.DeepEqual(ci.HostConfig.SecurityOpt, want.HostConfig.SecurityOpt) || !reflect.DeepEqual(ci.HostConfig.CapDrop, want.HostConfig.CapDrop) {
		t.Errorf("container %+v\n%+v\ndiffers from spec %+v\n%+v", ci.Config, ci.HostConfig, want.Config, want.HostConfig)
	}

	m, err := workspace.NewManager(workspace.Options{
		Client: r.cl, StorageRoot: r.root, StateDir: r.state, AgentPath: agent,
		DisableGPUs: true, Labels: labels,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	inst, err := m.Ensure(ctx, p, "tester", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if inst.ID != ci.ID {
		t.Errorf("the manager made %s instead of using the launcher's %s", inst.ID, ci.ID)
	}
}

func TestLaunchInteractive(t *testing.T) {
	r := newLaunchRig(t)
	cmd := r.cmd()
	cmd.Env = append(cmd.Env, "TERM=xterm")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 101})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out testenv.SyncBuffer
	copied := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(copied) }()
	waitOutput := func(what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the terminal:\n%s", what, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitOutput("$ ")
	io.WriteString(ptmx, "stty size; test -t 0 && echo tty-$((6*7))\r")
	waitOutput("tty-42")
	if !strings.Contains(out.String(), "30 101") {
		t.Errorf("pty size not passed: %q", out.String())
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // SIGWINCH → window-change is asynchronous
	io.WriteString(ptmx, "stty size\r")
	waitOutput("40 120")
	io.WriteString(ptmx, "exit\r")

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("sygctl did not exit after `exit`:\n%s", out.String())
	}
	ptmx.Close()
	<-copied
}

func TestLaunchRefuses(t *testing.T) {
	r := newLaunchRig(t)
	if _, stderr, code := r.run("", "--user", "Bad-User", "true"); code != 2 || !strings.Contains(stderr, `user name "Bad-User" is not valid`) {
		t.Errorf("bad user: exit %d, %q", code, stderr)
	}
	if _, stderr, code := r.run("", "--agent", "/nonexistent/agent", "true"); code != 2 || !strings.Contains(stderr, "no sygaldry-agent binary at /nonexistent/agent") {
		t.Errorf("no agent: exit %d, %q", code, stderr)
	}
	if _, stderr, code := r.run("", "--workspace", "src/zephyr", "true"); code != 2 || !strings.Contains(stderr, `--workspace "src/zephyr": want an absolute path`) {
		t.Errorf("relative workspace: exit %d, %q", code, stderr)
	}
	if _, stderr, code := r.run("", "--workspace", "/nonexistent/ws", "true"); code != 2 || !strings.Contains(stderr, "--workspace /nonexistent/ws: not an existing directory") {
		t.Errorf("missing workspace: exit %d, %q", code, stderr)
	}
	cmd := r.cmd("true")
	cmd.Env = append(cmd.Env, "SYGALDRY_PROJECT_ID=../etc")
	if out, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "not a valid name") {
		t.Errorf("bad project: %q", out)
	}
	cmd = r.cmd("true")
	cmd.Env = append(cmd.Env, "SYGALDRY_IMAGE=sygaldry-test/"+testenv.UniqueName("none")+":x")
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != exitLaunchFailed || !strings.Contains(string(out), "is missing and no dockerfile is configured for project "+r.project) {
		t.Errorf("missing image: exit %d, %q", cmd.ProcessState.ExitCode(), out)
	}
	if strings.Contains(string(out), "Error response from daemon") {
		t.Errorf("engine error shown without -v: %q", out)
	}
}

func TestLaunchConfigFile(t *testing.T) {
	r := newLaunchRig(t)
	cfgPath := filepath.Join(r.root + "-cfg.toml")
	doc := `
[docker]
storage_root = "/nonexistent/overridden/by/env"
[defaults]
gpus = "all"
[projects.` + r.project + `]
members = []
env = { FROM_CONFIG = "yes" }
hostname = "cfg-host"
`
	if err := os.WriteFile(cfgPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cfgPath) })
	stdout, stderr, code := r.run("", "--config", cfgPath, "sh", "-c", "echo $FROM_CONFIG $(hostname)")
	if code != 0 || stdout != "yes cfg-host\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(r.root, r.project, "monorepo_home")); err != nil {
		t.Errorf("SYGALDRY_STORAGE_ROOT not used: %v", err)
	}
}
