package workspace

import (
	"context"
	"errors"
	"fmt"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

func TestEnsureCreatesAndReuses(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	inst, progress := r.ensure(p, "alice")

	name := "sygaldry-" + p.Name + "-alice"
	if inst.Name != name || inst.SocketPath != filepath.Join(r.opts.StateDir, "run", name, "agent.sock") {
		t.Errorf("instance = %+v", inst)
	}
	for _, want := range []string{"Creating container " + name + " from " + r.image, "Starting container " + name} {
		if !strings.Contains(progress, want) {
			t.Errorf("progress %q lacks %q", progress, want)
		}
	}

	ci := r.inspect(inst.ID)
	if !ci.State.Running {
		t.Fatalf("state = %+v", ci.State)
	}
	l := ci.Config.Labels
	if l[LabelManaged] != "true" || l[LabelProject] != p.Name || l[LabelUser] != "alice" || l[testenv.TestLabel] != r.testID || len(l[LabelSpec]) != 64 {
		t.Errorf("labels = %v", l)
	}
	if ci.Config.User != "kvothe" || ci.Config.Hostname != p.Name {
		t.Errorf("user/hostname = %q/%q", ci.Config.User, ci.Config.Hostname)
	}
	mounts := map[string]string{}
	for _, m := range ci.Mounts {
		mounts[m.Destination] = m.Source
	}
	proj := filepath.Join(r.opts.StorageRoot, p.Name)
	want := map[string]string{
		"/home/kvothe":     proj + "/monorepo_home",
		"/opt/spack_store": proj + "/spack_store",
		"/opt/bazel_cache": proj + "/bazel_cache",
		"/config":          proj + "/config",
		AgentTarget:        r.opts.AgentPath,
		LinkTarget:         inst.LinkDir,
		AgentKeyTarget:     AgentKeyPath(r.opts.StateDir, name),
		CommandTarget:      r.opts.AgentPath,
		UserDirTarget:      proj + "/users/alice",
	}
	for _, p := range config.DefaultUserState {
		want["/home/kvothe/"+p] = proj + "/users/alice/home/" + p
	}
	if !maps.Equal(mounts, want) {
		t.Errorf("mounts = %v\nwant %v", mounts, want)
	}

	// Storage and link dir belong to the container user (uid 1000 in the image).
	for _, d := range append(slicesOf(proj, "monorepo_home", "spack_store", "bazel_cache", "config"), inst.LinkDir) {
		uid, gid, mode := owner(t, d)
		if uid != 1000 || gid != 1000 {
			t.Errorf("%s owned by %d:%d, want 1000:1000", d, uid, gid)
		}
		if d == inst.LinkDir && mode.Perm() != 0o700 {
			t.Errorf("link dir mode %v, want 0700", mode.Perm())
		}
	}

	out := run(t, inst, "id -un; hostname; echo $HOME; echo $SYGALDRY_PROJECT $SYGALDRY_USER $GREETING; touch ~/f /opt/spack_store/f /opt/bazel_cache/f /config/f && echo writable")
	wantOut := fmt.Sprintf("kvothe\n%s\n/home/kvothe\n%s alice hello\nwritable\n", p.Name, p.Name)
	if out != wantOut {
		t.Errorf("in the container:\n%s\nwant\n%s", out, wantOut)
	}

	// Second Ensure: the same container, no noise for the user.
	inst2, progress2 := r.ensure(p, "alice")
	if inst2.ID != inst.ID {
		t.Errorf("second Ensure made %s, want reuse of %s", inst2.ID, inst.ID)
	}
	if progress2 != "" {
		t.Errorf("second Ensure told the user %q", progress2)
	}

	// Another user of the same project: own container, same storage.
	bob, _ := r.ensure(p, "bob")
	if bob.ID == inst.ID || bob.Name != "sygaldry-"+p.Name+"-bob" {
		t.Fatalf("bob got %+v", bob)
	}
	if out := run(t, bob, "ls ~/f && hostname"); out != filepath.Join("/home/kvothe", "f")+"\n"+p.Name+"\n" {
		t.Errorf("bob sees %q", out)
	}
}

func TestEnsureStorageOwnership(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	proj := filepath.Join(r.opts.StorageRoot, p.Name)
	// monorepo_home: root's with data — an admin's; config: root's and empty.
	for _, d := range []string{"monorepo_home", "config"} {
		if err := os.MkdirAll(filepath.Join(proj, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(proj, "monorepo_home", "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.ensure(p, "alice")
	if uid, _, _ := owner(t, filepath.Join(proj, "monorepo_home")); uid != 0 {
		t.Errorf("pre-existing non-empty dir chowned to %d", uid)
	}
	if uid, _, _ := owner(t, filepath.Join(proj, "config")); uid != 1000 {
		t.Errorf("empty root-owned dir left to %d, want 1000", uid)
	}
	if uid, _, _ := owner(t, filepath.Join(proj, "spack_store")); uid != 1000 {
		t.Errorf("created dir owned by %d", uid)
	}
}

func TestEnsureStartsStopped(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	inst, _ := r.ensure(p, "alice")
	timeout := 5
	if err := r.cl.ContainerStop(context.Background(), inst.ID, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	// The storage may be gone meanwhile: it is made again.
	if err := os.RemoveAll(filepath.Join(r.opts.StorageRoot, p.Name, "bazel_cache")); err != nil {
		t.Fatal(err)
	}
	inst2, progress := r.ensure(p, "alice")
	if inst2.ID != inst.ID {
		t.Errorf("stopped container replaced: %s -> %s", inst.ID, inst2.ID)
	}
	if !r.inspect(inst.ID).State.Running {
		t.Error("not running after Ensure")
	}
	if !strings.Contains(progress, "Starting container") || strings.Contains(progress, "Creating") {
		t.Errorf("progress = %q", progress)
	}
	if out := run(t, inst2, "touch /opt/bazel_cache/x && echo ok"); out != "ok\n" {
		t.Errorf("bazel_cache after restart: %q", out)
	}
}

func TestEnsureRecreatesOnSpecChange(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	inst, _ := r.ensure(p, "alice")

	changed := p
	changed.Env = map[string]string{"GREETING": "changed"}

	// In use: kept as it is.
	r.m.Acquire(inst.Name)
	kept, _ := r.ensure(changed, "alice")
	if kept.ID != inst.ID {
		t.Fatalf("an acquired container was recreated")
	}
	if out := run(t, kept, "echo $GREETING"); out != "hello\n" {
		t.Errorf("kept container env: %q", out)
	}

	// Nobody inside: recreated.
	r.m.Release(inst.Name)
	fresh, progress := r.ensure(changed, "alice")
	if fresh.ID == inst.ID {
		t.Fatal("a changed, unused container was not recreated")
	}
	if !strings.Contains(progress, "changed; recreating") {
		t.Errorf("progress = %q", progress)
	}
	if out := run(t, fresh, "echo $GREETING"); out != "changed\n" {
		t.Errorf("new container env: %q", out)
	}
	if n := len(r.containers(p.Name, "alice")); n != 1 {
		t.Errorf("%d containers after recreation, want 1", n)
	}

	// A changed mount recreates too; the same spec does not.
	changed.Mounts = []config.Mount{{Source: r.dir, Target: "/extra", ReadOnly: true}}
	again, _ := r.ensure(changed, "alice")
	if again.ID == fresh.ID {
		t.Error("a mount change did not recreate")
	}
	same, _ := r.ensure(changed, "alice")
	if same.ID != again.ID {
		t.Error("an unchanged spec recreated")
	}

	// Nobody connected, but a job left running: kept until the job ends.
	if out, err := exec.Command("docker", "exec", "-d", same.Name, "sleep", "1000").CombinedOutput(); err != nil {
		t.Fatalf("start job: %v %s", err, out)
	}
	waitFor(t, 10*time.Second, "job running", func() bool {
		out, _ := exec.Command("docker", "exec", same.Name, "pgrep", "-x", "sleep").CombinedOutput()
		return len(out) > 0
	})
	changed.Env = map[string]string{"GREETING": "third"}
	busy, progress := r.ensure(changed, "alice")
	if busy.ID != same.ID || !strings.Contains(progress, "once no job runs") {
		t.Errorf("a container with a running job was recreated (progress %q)", progress)
	}
	if out, err := exec.Command("docker", "exec", same.Name, "pkill", "-x", "sleep").CombinedOutput(); err != nil {
		t.Fatalf("end job: %v %s", err, out)
	}
	if after, _ := r.ensure(changed, "alice"); after.ID == same.ID {
		t.Error("not recreated once the job ended")
	}
}

func TestEnsureConcurrentMakesOne(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	const n = 20
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			inst, err := r.m.Ensure(ctx, p, "alice", &testenv.SyncBuffer{})
			errs[i] = err
			if err == nil {
				ids[i] = inst.ID
			}
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Ensure %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("Ensure %d got %s, Ensure 0 got %s", i, ids[i], ids[0])
		}
	}
	if cs := r.containers(p.Name, "alice"); len(cs) != 1 {
		t.Errorf("%d containers, want exactly 1", len(cs))
	}
}

func TestEnsureBuildsMissingImage(t *testing.T) {
	r := newRig(t, nil)
	tag := "sygaldry-test/" + testenv.UniqueName("img") + ":latest"
	r.removeImageAtCleanup(tag)
	dir := testenv.ShortTempDir(t)
	df := filepath.Join(dir, "dev.dockerfile")
	writeFile(t, df, "FROM "+r.image+"\nCOPY hello.txt /etc/hello.txt\nRUN echo built > /etc/built\n")
	writeFile(t, filepath.Join(dir, "hello.txt"), "from the context\n")

	p := r.project()
	p.Image, p.Dockerfile = tag, df
	q := p
	q.Name = testenv.UniqueName("p")

	// Two projects on one missing image, at once: one build.
	var wg sync.WaitGroup
	var progA, progB testenv.SyncBuffer
	var instA, instB *Instance
	var errA, errB error
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wg.Add(2)
	go func() { defer wg.Done(); instA, errA = r.m.Ensure(ctx, p, "alice", &progA) }()
	go func() { defer wg.Done(); instB, errB = r.m.Ensure(ctx, q, "alice", &progB) }()
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("Ensure: %v / %v\n%s\n%s", errA, errB, progA.String(), progB.String())
	}
	all := progA.String() + progB.String()
	if !strings.Contains(all, "Step 1/3 : FROM "+r.image) || !strings.Contains(all, "is missing; building it from "+df) {
		t.Errorf("progress lacks the build steps:\n%s", all)
	}
	if n := strings.Count(all, "Step 1/3"); n != 1 {
		t.Errorf("image built %d times, want once:\n%s", n, all)
	}
	if strings.Contains(all, "{\"stream\"") {
		t.Errorf("raw JSON reached the user:\n%s", all)
	}
	for _, inst := range []*Instance{instA, instB} {
		if out := run(t, inst, "cat /etc/built /etc/hello.txt"); out != "built\nfrom the context\n" {
			t.Errorf("built image content: %q", out)
		}
	}
}

func TestEnsureImageMissingNoDockerfile(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	p.Image = "sygaldry-test/" + testenv.UniqueName("nope") + ":latest"
	_, err := r.m.Ensure(context.Background(), p, "alice", &testenv.SyncBuffer{})
	if !errors.Is(err, ErrImageMissing) {
		t.Fatalf("err = %v, want ErrImageMissing", err)
	}
	want := fmt.Sprintf("image %s is missing and no dockerfile is configured for project %s", p.Image, p.Name)
	if got := usererr.Message(err); got != want {
		t.Errorf("message = %q\nwant %q", got, want)
	}
	if len(r.containers(p.Name, "alice")) != 0 {
		t.Error("a container was made anyway")
	}
	if _, err := os.Stat(filepath.Join(r.opts.StorageRoot, p.Name)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("storage created for a failed Ensure: %v", err)
	}
}

func TestEnsureBrokenDockerfile(t *testing.T) {
	r := newRig(t, nil)
	dir := testenv.ShortTempDir(t)
	df := filepath.Join(dir, "Dockerfile")
	writeFile(t, df, "FROM "+r.image+"\nRUN echo about to fail && exit 3\n")
	p := r.project()
	p.Image, p.Dockerfile = "sygaldry-test/"+testenv.UniqueName("broken")+":latest", df
	r.removeImageAtCleanup(p.Image) // in case the engine tagged something
	var progress testenv.SyncBuffer
	_, err := r.m.Ensure(context.Background(), p, "alice", &progress)
	if !errors.Is(err, ErrBuildFailed) {
		t.Fatalf("err = %v, want ErrBuildFailed", err)
	}
	msg := usererr.Message(err)
	if !strings.Contains(msg, "could not be built from "+df) || !strings.Contains(msg, "returned a non-zero code: 3") {
		t.Errorf("message = %q", msg)
	}
	if !strings.Contains(progress.String(), "about to fail") {
		t.Errorf("progress lacks the build output: %q", progress.String())
	}
	if len(r.containers(p.Name, "alice")) != 0 {
		t.Error("a container was made anyway")
	}

	// A dockerfile that is not there.
	p.Dockerfile = filepath.Join(dir, "missing.dockerfile")
	_, err = r.m.Ensure(context.Background(), p, "alice", &progress)
	if !errors.Is(err, ErrImageMissing) || !strings.Contains(usererr.Message(err), "cannot be read") {
		t.Errorf("missing dockerfile: %v", err)
	}
}

func TestEnsureRelativeDockerfile(t *testing.T) {
	dir := testenv.ShortTempDir(t)
	r := newRig(t, func(o *Options) { o.DockerfileDir = dir })
	if err := os.MkdirAll(filepath.Join(dir, "container"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "container", "x.dockerfile"), "FROM "+r.image+"\nRUN touch /etc/rel\n")
	tag := "sygaldry-test/" + testenv.UniqueName("rel") + ":latest"
	r.removeImageAtCleanup(tag)
	p := r.project()
	p.Image, p.Dockerfile = tag, "container/x.dockerfile"
	inst, _ := r.ensure(p, "alice")
	if out := run(t, inst, "ls /etc/rel"); out != "/etc/rel\n" {
		t.Errorf("out = %q", out)
	}
}

func TestEnsureIdleStop(t *testing.T) {
	r := newRig(t, func(o *Options) { o.IdleStop = 500 * time.Millisecond })
	p := r.project()
	inst, _ := r.ensure(p, "alice")
	r.m.Acquire(inst.Name)

	// Held: not stopped however long it sits.
	time.Sleep(1500 * time.Millisecond)
	if !r.inspect(inst.ID).State.Running {
		t.Fatal("an acquired container was stopped")
	}
	// Released and re-acquired at once: the timer is cancelled.
	r.m.Release(inst.Name)
	r.m.Acquire(inst.Name)
	time.Sleep(1500 * time.Millisecond)
	if !r.inspect(inst.ID).State.Running {
		t.Fatal("a re-acquired container was stopped")
	}
	// Released for good: stopped after idle_stop.
	r.m.Release(inst.Name)
	waitFor(t, 20*time.Second, "idle container stopped", func() bool { return !r.inspect(inst.ID).State.Running })
	if r.m.InUse(inst.Name) != 0 {
		t.Errorf("InUse = %d", r.m.InUse(inst.Name))
	}
	// The next Ensure starts it again.
	inst2, _ := r.ensure(p, "alice")
	if inst2.ID != inst.ID || !r.inspect(inst.ID).State.Running {
		t.Error("not restarted after an idle stop")
	}
	// Ensured but never acquired: stopped too.
	waitFor(t, 20*time.Second, "unacquired container stopped", func() bool { return !r.inspect(inst.ID).State.Running })
}

func TestEnsureNoGPURuntime(t *testing.T) {
	r := newRig(t, nil)
	info, err := r.cl.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info.Runtimes["nvidia"]; ok {
		t.Skip("this engine has the NVIDIA runtime")
	}
	p := r.project()
	p.GPUs = config.GPUs{Set: true, All: true}
	_, err = r.m.Ensure(context.Background(), p, "alice", &testenv.SyncBuffer{})
	if !errors.Is(err, ErrNoGPURuntime) {
		t.Fatalf("err = %v, want ErrNoGPURuntime", err)
	}
	msg := usererr.Message(err)
	if !strings.Contains(msg, `gpus = "none"`) || !strings.Contains(msg, "NVIDIA Container Toolkit") || strings.Contains(msg, "could not select") {
		t.Errorf("message = %q", msg)
	}

	// The launcher's SYGALDRY_GPU=false gives a container that starts.
	r2 := newRig(t, func(o *Options) { o.DisableGPUs = true })
	inst, _ := r2.ensure(p, "alice")
	if dr := r2.inspect(inst.ID).HostConfig.DeviceRequests; len(dr) != 0 {
		t.Errorf("device requests with GPUs disabled: %+v", dr)
	}
}

func TestEnsureDefaultUlimits(t *testing.T) {
	r := newRig(t, nil)
	inst, _ := r.ensure(r.project(), "alice")
	// No GPU: the 64 MiB stack, and the engine's own memlock.
	if out := run(t, inst, "ulimit -s"); out != "65536\n" {
		t.Errorf("stack limit in the container: %q", out)
	}
	if ul := r.inspect(inst.ID).HostConfig.Ulimits; len(ul) != 1 || ul[0].Name != "stack" {
		t.Errorf("ulimits = %+v", ul)
	}
}

func TestEnsureGPUUlimits(t *testing.T) {
	// What a GPU container gets (memlock=-1), on a GPU-less engine.
	r := newRig(t, func(o *Options) { o.Ulimits = DefaultUlimits() })
	inst, err := r.m.Ensure(context.Background(), r.project(), "alice", &testenv.SyncBuffer{})
	if !memlockUnlimitedAllowed(t, r.cl, r.image) {
		// This engine may not raise memlock: the admin is told what to fix.
		if !errors.Is(err, ErrUlimit) || !strings.Contains(usererr.Message(err), "LimitMEMLOCK=infinity") {
			t.Fatalf("err = %v, want ErrUlimit with advice", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if out := run(t, inst, "ulimit -l; ulimit -s"); out != "unlimited\n65536\n" {
		t.Errorf("ulimits in the container: %q", out)
	}
}

func TestEnsureContainerExits(t *testing.T) {
	dir := testenv.ShortTempDir(t)
	fake := filepath.Join(dir, "fake-agent")
	writeFile(t, fake, "#!/bin/sh\necho agent cannot start: $* >&2\nexit 3\n")
	if err := os.Chmod(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(o *Options) { o.AgentPath = fake })
	start := time.Now()
	_, err := r.m.Ensure(context.Background(), r.project(), "alice", &testenv.SyncBuffer{})
	if !errors.Is(err, ErrContainerExit) {
		t.Fatalf("err = %v, want ErrContainerExit", err)
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("took %v: an exit must end the wait at once", time.Since(start))
	}
	msg := usererr.Message(err)
	if !strings.Contains(msg, "exited (code 3)") || !strings.Contains(msg, "agent cannot start: serve --listen /.sygaldry/run/agent.sock") {
		t.Errorf("message = %q", msg)
	}
}

func TestEnsureUserMissing(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	p.User = "nosuchuser"
	_, err := r.m.Ensure(context.Background(), p, "alice", &testenv.SyncBuffer{})
	if !errors.Is(err, ErrUserMissing) || !strings.Contains(usererr.Message(err), "has no user nosuchuser") {
		t.Fatalf("err = %v", err)
	}
	if n := len(r.containers(p.Name, "alice")); n != 0 {
		t.Errorf("%d containers left behind", n)
	}
}

func TestEnsureRefusesBadNames(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	p.Name = "../escape"
	if _, err := r.m.Ensure(context.Background(), p, "alice", nil); !errors.Is(err, ErrBadName) {
		t.Errorf("bad project: %v", err)
	}
	p = r.project()
	if _, err := r.m.Ensure(context.Background(), p, "a/b", nil); !errors.Is(err, ErrBadName) {
		t.Errorf("bad user: %v", err)
	}
	if entries, _ := os.ReadDir(r.opts.StorageRoot); len(entries) != 0 {
		t.Errorf("storage created: %v", entries)
	}
}

func TestEnsureMissingMountSource(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	p.Mounts = []config.Mount{{Source: r.dir + "/not-there", Target: "/data"}}
	_, err := r.m.Ensure(context.Background(), p, "alice", nil)
	if err == nil || !strings.Contains(usererr.Message(err), "names a host path that does not exist") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(r.dir + "/not-there"); !errors.Is(err, fs.ErrNotExist) {
		t.Error("an extra mount's source was created")
	}
}

func TestEnsureCancelled(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.m.Ensure(ctx, p, "alice", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
	// Nothing half made blocks the next one.
	r.ensure(p, "alice")
}

func TestList(t *testing.T) {
	var projects sync.Map
	r := newRig(t, func(o *Options) {
		o.Projects = func(name string) (config.Resolved, bool) {
			v, ok := projects.Load(name)
			if !ok {
				return config.Resolved{}, false
			}
			return v.(config.Resolved), true
		}
	})
	p := r.project()
	projects.Store(p.Name, p)
	inst, _ := r.ensure(p, "alice")
	r.m.Acquire(inst.Name)
	defer r.m.Release(inst.Name)

	find := func() Info {
		t.Helper()
		all, err := r.m.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range all {
			if in.ID == inst.ID {
				return in
			}
		}
		t.Fatalf("List lacks %s", inst.Name)
		return Info{}
	}
	in := find()
	if in.Name != inst.Name || in.Project != p.Name || in.User != "alice" || in.State != "running" || in.Spec != SpecCurrent || in.InUse != 1 {
		t.Errorf("info = %+v", in)
	}
	if time.Since(in.Created) > time.Hour || in.Image != r.image {
		t.Errorf("created %v image %q", in.Created, in.Image)
	}
	changed := p
	changed.Env = map[string]string{"X": "y"}
	projects.Store(p.Name, changed)
	if got := find().Spec; got != SpecChanged {
		t.Errorf("spec after a config change = %s", got)
	}
}

func TestCloseStopsWork(t *testing.T) {
	r := newRig(t, func(o *Options) { o.IdleStop = time.Hour })
	p := r.project()
	inst, _ := r.ensure(p, "alice")
	if err := r.m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.Ensure(context.Background(), p, "alice", nil); !errors.Is(err, ErrManagerClosed) {
		t.Errorf("Ensure after Close: %v", err)
	}
	if !r.inspect(inst.ID).State.Running {
		t.Error("Close stopped the container")
	}
}

func slicesOf(dir string, names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = filepath.Join(dir, n)
	}
	return out
}

func owner(t *testing.T, p string) (uid, gid int, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid), fi.Mode()
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A job left running (nohup, setsid, tmux) keeps an idle container up; once
// only the agent is left, the container is stopped.
func TestIdleStopWaitsForBackgroundJobs(t *testing.T) {
	r := newRig(t, func(o *Options) { o.IdleStop = 300 * time.Millisecond })
	inst, _ := r.ensure(r.project(), "alice")
	// Held while the job starts, as by the connection that starts it.
	r.m.Acquire(inst.Name)
	if out, err := exec.Command("docker", "exec", "-d", inst.Name, "sleep", "1000").CombinedOutput(); err != nil {
		t.Fatalf("start job: %v %s", err, out)
	}
	waitFor(t, 10*time.Second, "job running", func() bool {
		out, _ := exec.Command("docker", "exec", inst.Name, "pgrep", "-x", "sleep").CombinedOutput()
		return len(out) > 0
	})
	r.m.Release(inst.Name)
	time.Sleep(2 * time.Second) // several idle periods
	if !r.inspect(inst.ID).State.Running {
		t.Fatal("a container with a running job was stopped as idle")
	}
	if out, err := exec.Command("docker", "exec", inst.Name, "pkill", "-x", "sleep").CombinedOutput(); err != nil {
		t.Fatalf("end job: %v %s", err, out)
	}
	waitFor(t, 20*time.Second, "container stopped once the job ended", func() bool { return !r.inspect(inst.ID).State.Running })
}

func TestUserCommands(t *testing.T) {
	top := container.TopResponse{
		Titles: []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"},
		Processes: [][]string{
			{"1000", "1", "0", "0", "10:00", "?", "00:00:00", AgentTarget + " serve --listen /.sygaldry/run/agent.sock"},
			{"1000", "7", "1", "0", "10:00", "?", "00:00:00", AgentTarget + " serve --listen /.sygaldry/run/agent.sock"},
			{"1000", "9", "1", "0", "10:00", "?", "00:00:00", "[sh] <defunct>"},
			{"1000", "12", "1", "0", "10:00", "?", "00:01:00", "python train.py"},
		},
	}
	if got := userCommands(top); len(got) != 1 || got[0] != "python train.py" {
		t.Errorf("userCommands = %q", got)
	}
	if got := userCommands(container.TopResponse{Titles: []string{"PID"}}); got != nil {
		t.Errorf("no CMD column: %q", got)
	}
}
