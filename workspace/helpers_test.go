package workspace

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/link"
)

// rig is a Manager on the real engine with its own storage root, state dir
// and test label; everything it makes is removed in t.Cleanup.
type rig struct {
	t      *testing.T
	cl     *client.Client
	image  string
	dir    string
	testID string
	opts   Options
	m      *Manager
}

func newRig(t *testing.T, mutate func(*Options)) *rig {
	t.Helper()
	cl := testenv.Docker(t)
	img := testenv.Image(t)
	agent := testenv.AgentBinary(t)
	dir := testenv.ShortTempDir(t)
	r := &rig{t: t, cl: cl, image: img, dir: dir, testID: testenv.UniqueName("t")}
	r.opts = Options{
		Client:       cl,
		StorageRoot:  dir + "/s",
		StateDir:     dir + "/st",
		AgentPath:    agent,
		ReadyTimeout: 30 * time.Second,
		Labels:       map[string]string{testenv.TestLabel: r.testID},
		Logger:       slog.New(slog.NewTextHandler(testenv.LogWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&r.opts)
	}
	// Registered after ShortTempDir, so it runs before the directory goes.
	t.Cleanup(func() { testenv.RemoveLabelled(t, cl, r.testID) })
	m, err := NewManager(r.opts)
	if err != nil {
		t.Fatal(err)
	}
	r.m = m
	t.Cleanup(func() { m.Close() })
	return r
}

// project is a fresh project on the test image, without GPUs.
func (r *rig) project() config.Resolved {
	return config.Resolved{
		Name: testenv.UniqueName("p"),
		Settings: config.Settings{
			Image:   r.image,
			User:    "kvothe",
			GPUs:    config.GPUs{Set: true},
			ShmSize: "64m",
			Env:     map[string]string{"GREETING": "hello"},
		},
	}
}

func (r *rig) ensure(p config.Resolved, user string) (*Instance, string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress testenv.SyncBuffer
	inst, err := r.m.Ensure(ctx, p, user, &progress)
	if err != nil {
		r.t.Fatalf("Ensure(%s, %s): %v\nprogress:\n%s", p.Name, user, err, progress.String())
	}
	return inst, progress.String()
}

func (r *rig) inspect(id string) container.InspectResponse {
	r.t.Helper()
	ci, err := r.cl.ContainerInspect(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return ci
}

// containers lists the containers of (project, user) among this test's.
func (r *rig) containers(project, user string) []container.Summary {
	r.t.Helper()
	cs, err := r.cl.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", testenv.TestLabel+"="+r.testID),
		filters.Arg("label", LabelProject+"="+project),
		filters.Arg("label", LabelUser+"="+user),
	)})
	if err != nil {
		r.t.Fatal(err)
	}
	return cs
}

// run runs cmd through the agent in inst and returns its stdout.
func run(t *testing.T, inst *Instance, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := link.Dial(ctx, inst.SocketPath, inst.Peer)
	if err != nil {
		t.Fatalf("dial agent: %v", err)
	}
	defer cl.Close()
	s, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var stderr bytes.Buffer
	s.Stderr = &stderr
	out, err := s.Output(cmd)
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.String())
	}
	return string(out)
}

// removeImageAtCleanup removes tag when the test ends, after this test's
// containers (an image a container still uses would only be untagged).
func (r *rig) removeImageAtCleanup(tag string) {
	r.t.Cleanup(func() {
		testenv.RemoveLabelled(r.t, r.cl, r.testID)
		_, err := r.cl.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			r.t.Errorf("remove image %s: %v", tag, err)
		}
	})
}

// memlockUnlimitedAllowed tells whether the engine may set memlock=-1:
// sandboxed engines (dockerd without CAP_SYS_RESOURCE, a low
// LimitMEMLOCK) refuse it; a GPU host's must not.
func memlockUnlimitedAllowed(t *testing.T, cl *client.Client, img string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := cl.ContainerCreate(ctx, &container.Config{Image: img, Cmd: []string{"true"}, Labels: map[string]string{testenv.TestLabel: "probe"}},
		&container.HostConfig{Resources: container.Resources{Ulimits: DefaultUlimits()}}, nil, nil, "")
	if err != nil {
		t.Fatalf("probe ulimits: %v", err)
	}
	defer cl.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true})
	err = cl.ContainerStart(ctx, resp.ID, container.StartOptions{})
	return err == nil || !isRlimitDenied(err)
}
