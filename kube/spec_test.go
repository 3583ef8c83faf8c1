package kube

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/workspace"
)

func project(mod func(*config.Settings)) config.Resolved {
	p := config.Resolved{Name: "zephyr", Members: []string{"alice"}}
	us := []string{".vscode-server"}
	p.UserState = &us
	p.GPUs = config.GPUs{Set: true} // none unless a test asks
	p.Kube.GPUResource = "nvidia.com/gpu"
	if mod != nil {
		mod(&p.Settings)
	}
	return p
}

func input(p config.Resolved) SpecInput {
	return SpecInput{
		Project: p, User: "alice", Namespace: "sygaldry",
		Node:    workspace.HostInfo{CPUs: 8, Memory: 32 << 30},
		LinkKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZ7Xz0Fv0b3sC2i9pS8bQ0D0v9bJ8gq0x0M0Q2xv1o2 gateway",
	}
}

func mustSpec(t *testing.T, in SpecInput) Spec {
	t.Helper()
	s, err := BuildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNamesAreValidAndDistinct(t *testing.T) {
	if got := PodName("zephyr", "alice"); got != "sygaldry-zephyr-alice" {
		t.Errorf("PodName = %q, want the Docker backend's name", got)
	}
	seen := map[string]string{}
	for _, pair := range [][2]string{{"a_b", "c"}, {"a-b", "c"}, {"a", "b_c"}, {"a_", "b"}, {"ml_team", "bob_"}} {
		n := PodName(pair[0], pair[1])
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			t.Errorf("PodName%v = %q: %v", pair, n, errs)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("PodName%v = %q, the same as for %s", pair, n, other)
		}
		seen[n] = pair[0] + "/" + pair[1]
		c := ClaimName(pair[0])
		if errs := validation.IsDNS1123Subdomain(c); len(errs) > 0 {
			t.Errorf("ClaimName(%q) = %q: %v", pair[0], c, errs)
		}
	}
	if ClaimName("a_b") == ClaimName("a-b") {
		t.Error(`projects "a_b" and "a-b" share a claim`)
	}
}

func TestSpecHardening(t *testing.T) {
	s := mustSpec(t, input(project(nil)))
	ps := s.Pod.Spec
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Error("the pod gets a service account token: users could reach the cluster's API")
	}
	if ps.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %q, want Never (a restarted agent has no key)", ps.RestartPolicy)
	}
	if ps.SecurityContext == nil || ps.SecurityContext.SeccompProfile == nil || ps.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("no RuntimeDefault seccomp profile")
	}
	c := ps.Containers[0]
	sc := c.SecurityContext
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("privilege escalation allowed (no_new_privs off)")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities dropped: %v, want ALL", sc.Capabilities.Drop)
	}
	if !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"CHOWN", "SETGID", "SETUID"}) {
		t.Errorf("capabilities added: %v, want only the start script's", sc.Capabilities.Add)
	}
	if !strings.Contains(c.Command[2], "--bounding-set=-all") || !strings.Contains(c.Command[2], "--inh-caps=-all") {
		t.Error("the agent does not run without capabilities")
	}
	if got := env(c, agentKeyEnv); !strings.HasPrefix(got, "ssh-ed25519 ") {
		t.Errorf("%s = %q, want the gateway's link key", agentKeyEnv, got)
	}
	if env(c, "NVIDIA_VISIBLE_DEVICES") != "void" {
		t.Error("a pod without GPUs does not say NVIDIA_VISIBLE_DEVICES=void")
	}
	if _, ok := c.Resources.Limits["nvidia.com/gpu"]; ok {
		t.Error("a project with gpus = 0 asks for a GPU")
	}
}

// A project's env cannot replace the key the agent demands, nor the
// identity variables.
func TestSpecEnvCannotOverrideOurs(t *testing.T) {
	p := project(func(s *config.Settings) {
		s.Env = map[string]string{agentKeyEnv: "ssh-ed25519 AAAA evil", "SYGALDRY_USER": "bob", "A": "1"}
	})
	c := mustSpec(t, input(p)).Pod.Spec.Containers[0]
	var keys, users int
	for _, e := range c.Env {
		switch e.Name {
		case agentKeyEnv:
			keys++
			if strings.Contains(e.Value, "evil") {
				t.Error("the project's env replaced the gateway's link key")
			}
		case "SYGALDRY_USER":
			users++
			if e.Value != "alice" {
				t.Errorf("SYGALDRY_USER = %q", e.Value)
			}
		}
	}
	if keys != 1 || users != 1 {
		t.Errorf("%d link keys and %d SYGALDRY_USER in the env, want one each", keys, users)
	}
	if env(c, "A") != "1" {
		t.Error("the project's own env is lost")
	}
}

func TestSpecStorageIsSubPathsOfTheClaim(t *testing.T) {
	s := mustSpec(t, input(project(func(s *config.Settings) { s.Workspace = "monorepo_home/src" })))
	if s.Claim != "sygaldry-zephyr" {
		t.Errorf("claim %q", s.Claim)
	}
	want := map[string]string{
		"/home/kvothe":                "monorepo_home",
		"/opt/spack_store":            "spack_store",
		"/opt/bazel_cache":            "bazel_cache",
		"/config":                     "config",
		"/.sygaldry/user":             "users/alice",
		"/home/kvothe/.vscode-server": "users/alice/home/.vscode-server",
		"/workspace":                  "monorepo_home/src",
	}
	got := map[string]string{}
	for _, m := range s.Pod.Spec.Containers[0].VolumeMounts {
		if m.Name == claimVolume {
			got[m.MountPath] = m.SubPath
		}
	}
	for path, sub := range want {
		if got[path] != sub {
			t.Errorf("%s: subPath %q, want %q", path, got[path], sub)
		}
	}
	if len(got) != len(want) {
		t.Errorf("claim mounts %v, want %v", got, want)
	}
}

func TestSpecRefusesWhatAPodCannotHave(t *testing.T) {
	for name, mod := range map[string]func(*config.Settings){
		"absolute workspace": func(s *config.Settings) { s.Workspace = "/srv/repo" },
		"host mounts":        func(s *config.Settings) { s.Mounts = []config.Mount{{Source: "/data", Target: "/data"}} },
		"ide cache":          func(s *config.Settings) { s.IDECache = "/srv/ide" },
		"all GPUs":           func(s *config.Settings) { s.GPUs = config.GPUs{Set: true, All: true} },
		"GPU indices":        func(s *config.Settings) { s.GPUs = config.GPUs{Set: true, Indices: []int{0}} },
		"bad capability":     func(s *config.Settings) { s.CapAdd = []string{"NOT_A_CAP"} },
		"bad container user": func(s *config.Settings) { s.User = "x'; rm -rf /" },
	} {
		if _, err := BuildSpec(input(project(mod))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	in := input(project(nil))
	in.User = "Bad-User"
	if _, err := BuildSpec(in); err == nil {
		t.Error("a bad user name was accepted")
	}
}

func TestSpecGPUsAndLimits(t *testing.T) {
	p := project(func(s *config.Settings) {
		s.GPUs = config.GPUs{Set: true, Count: 2}
		s.CPUs = config.CPUs{Set: true, Percent: 50}
		s.Memory = config.Memory{Set: true, Bytes: 8 << 30}
	})
	p.Kube.GPUResource = "example.com/gpu"
	s := mustSpec(t, input(p))
	r := s.Pod.Spec.Containers[0].Resources
	if q := r.Limits["example.com/gpu"]; q.Value() != 2 {
		t.Errorf("GPU limit %v, want 2 of the project's gpu_resource", q.String())
	}
	if s.GPUs != 2 || s.GPUResource != "example.com/gpu" {
		t.Errorf("spec says %d %s", s.GPUs, s.GPUResource)
	}
	if q := r.Limits[corev1.ResourceCPU]; q.MilliValue() != 4000 {
		t.Errorf("cpu limit %s, want 4 (50%% of an 8-CPU node)", q.String())
	}
	if q := r.Requests[corev1.ResourceCPU]; q.MilliValue() > 100 {
		t.Errorf("cpu request %s: a member's pod would not fit beside another's", q.String())
	}
	if q := r.Limits[corev1.ResourceMemory]; q.Value() != 8<<30 {
		t.Errorf("memory limit %s", q.String())
	}
	if env(s.Pod.Spec.Containers[0], "NVIDIA_VISIBLE_DEVICES") != "" {
		t.Error("a pod with GPUs hides them")
	}
}

// The hash covers what makes a pod (image, env, resources) and not the
// per-pod agent key, so a re-adopted pod is not recreated for its key.
func TestSpecHash(t *testing.T) {
	a := input(project(nil))
	b := a
	b.AgentKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZ7Xz0Fv0b3sC2i9pS8bQ0D0v9bJ8gq0x0M0Q2xv1o2"
	ha, hb := mustSpec(t, a).Hash, mustSpec(t, b)
	if ha != hb.Hash {
		t.Error("the agent key changes the hash")
	}
	if hb.Pod.Annotations[AnnotationAgentKey] != b.AgentKey || hb.Pod.Annotations[AnnotationSpec] != ha {
		t.Errorf("annotations %v", hb.Pod.Annotations)
	}
	c := input(project(func(s *config.Settings) { s.Image = "other:1" }))
	if mustSpec(t, c).Hash == ha {
		t.Error("a new image keeps the hash")
	}
	d := a
	d.LinkKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB2Xz0Fv0b3sC2i9pS8bQ0D0v9bJ8gq0x0M0Q2xv1o2"
	if mustSpec(t, d).Hash == ha {
		t.Error("a new gateway link key keeps the hash: old pods would refuse the gateway")
	}
}

// The start script is valid sh, whatever the paths it names.
func TestStartScriptParses(t *testing.T) {
	script := startScript("kvothe", []string{"/home/kvothe", "/home/kvothe/it's here", "/.sygaldry/user"})
	out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("sh -n: %v\n%s\n%s", err, out, script)
	}
	if !strings.Contains(script, `'/home/kvothe/it'\''s here'`) {
		t.Errorf("a path with a quote is not quoted:\n%s", script)
	}
}

func TestPendingLines(t *testing.T) {
	pod := &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message: "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. no new claims to deallocate, preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
	}}}}
	if got := unschedulable(pod); got != "0/1 nodes are available: 1 Insufficient nvidia.com/gpu." {
		t.Errorf("unschedulable = %q", got)
	}
	if got := asking(Spec{GPUs: 1, GPUResource: "nvidia.com/gpu"}); got != " (it asks for 1 nvidia.com/gpu)" {
		t.Errorf("asking = %q", got)
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: mainContainer, State: corev1.ContainerState{
		Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: "image not present"},
	}}}
	if got := waitingProblem(pod); !strings.Contains(got, "ErrImageNeverPull") {
		t.Errorf("waitingProblem = %q", got)
	}
	// A termination message is the container's own words: no escape
	// sequence reaches the user's terminal, and its length is bounded.
	pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: 64, Reason: "Error", Message: "no user\x1b]0;pwned\x07\n" + strings.Repeat("x", 1000),
	}}
	got := why(pod)
	if strings.ContainsAny(got, "\x1b\x07\n") || utf8.RuneCountInString(got) > maxPodText+50 || !strings.Contains(got, "exited with code 64: Error no user?]0;pwned?") {
		t.Errorf("why = %q", got)
	}
}

// What the jobs listing reads comes from inside the pod: only "PID COMMAND"
// lines count, and not PID 1 (the agent).
func TestParseJobsHostileOutput(t *testing.T) {
	out := "1 sygaldry-agent\n42 python\nnot a line\n-5 x\n\n77 " + strings.Repeat("a", 500) + "\n"
	js := parseJobs([]byte(out))
	if len(js) != 2 || js[0] != (Job{42, "python"}) || js[1].PID != 77 || len(js[1].Command) != 64 {
		t.Errorf("parseJobs = %+v", js)
	}
	many := strings.Repeat("9 x\n", 5000)
	if n := len(parseJobs([]byte(many))); n != maxJobs {
		t.Errorf("%d jobs listed, want the cap %d", n, maxJobs)
	}
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func TestOwnDirs(t *testing.T) {
	got := ownDirs([]string{"/home/k", "/home/k/.vscode-server", "/home/k/.cache/JetBrains", "/config"})
	want := []ownDir{
		{"/home/k/.cache/JetBrains", nil},
		{"/home/k/.cache", []string{"JetBrains"}},
		{"/home/k/.vscode-server", nil},
		{"/home/k", []string{".cache", ".vscode-server"}},
		{"/config", nil},
	}
	if len(got) != len(want) {
		t.Fatalf("ownDirs = %+v", got)
	}
	for i := range want {
		if got[i].path != want[i].path || !slices.Equal(got[i].allowed, want[i].allowed) {
			t.Errorf("ownDirs[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// The start script's own() gives the user a root-owned directory only when
// it holds nothing but our mountpoints: never one with somebody's data.
func TestStartScriptOwnsOnlyFreshDirs(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to chown")
	}
	script := startScript("kvothe", nil)
	i, j := strings.Index(script, "own() {"), strings.Index(script, "\n}\n")
	fn := script[i : j+3]
	dir := t.TempDir()
	for _, d := range []string{"fresh/.vscode-server", "data", "dotdata"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "data", "notes.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "dotdata", ".bashrc"), []byte("x"), 0o644)
	cmd := exec.Command("sh", "-c", "uid=4321 gid=4321\n"+fn+
		"own \"$1/fresh\" .vscode-server\nown \"$1/data\" .vscode-server\nown \"$1/dotdata\" .vscode-server\nown \"$1/missing\"\n", "sh", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for d, want := range map[string]uint32{"fresh": 4321, "data": 0, "dotdata": 0} {
		fi, err := os.Stat(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != want {
			t.Errorf("%s owned by %d, want %d", d, uid, want)
		}
	}
}

// An exec's output is the pod's: only the first bytes are kept, and every
// write still succeeds, so the stream drains.
func TestCapBuffer(t *testing.T) {
	b := &capBuffer{max: 10}
	for range 3 {
		if n, err := b.Write([]byte("0123456")); n != 7 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if got := b.String(); got != "0123456012" {
		t.Errorf("kept %q, want the first 10 bytes", got)
	}
}
