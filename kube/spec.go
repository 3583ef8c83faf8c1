package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/workspace"
)

// The pod's contract with the gateway. Labels carry who the pod is for (the
// same keys as the Docker containers'); annotations carry what does not fit
// a label value (a sha256, a public key).
const (
	LabelManaged = workspace.LabelManaged
	LabelProject = workspace.LabelProject
	LabelUser    = workspace.LabelUser
	// AnnotationSpec is the spec hash; AnnotationAgentKey the public half of
	// the pod's agent host key, which the gateway pins.
	AnnotationSpec     = workspace.LabelSpec
	AnnotationAgentKey = workspace.LabelAgentKey

	// AgentPort is where the agent listens inside the pod, for the link
	// (port-forward or the pod IP). The agent demands the gateway's link key.
	AgentPort = 7022

	mainContainer = "main"
	agentVolume   = "sygaldry-agent"
	shmVolume     = "dshm"
	claimVolume   = "storage"
	// agentDir is an emptyDir the gateway streams the agent and its host
	// key into (deliver.go); the pod's start script waits for them.
	agentDir     = "/.sygaldry/bin"
	agentBinary  = agentDir + "/sygaldry-agent"
	agentKeyFile = agentDir + "/agent_key"
)

// PodName is the name of (project, user)'s pod. Project and user names may
// hold "_", which object names may not: it becomes "-", and a name that
// changed that way gets a hash of the real pair, so "a_b" and "a-b" never
// share a pod.
func PodName(project, user string) string {
	return objectName("sygaldry-"+project+"-"+user, project+"\x00"+user)
}

// ClaimName is the name of a project's PersistentVolumeClaim.
func ClaimName(project string) string {
	return objectName("sygaldry-"+project, project)
}

func objectName(name, key string) string {
	clean := strings.ReplaceAll(name, "_", "-")
	if clean == name {
		return name
	}
	sum := sha256.Sum256([]byte(key))
	return clean + "-" + hex.EncodeToString(sum[:4])
}

// SpecInput is everything a pod spec is made of.
type SpecInput struct {
	Project   config.Resolved
	User      string
	Namespace string
	Kube      config.Kubernetes
	// Node is the size of the smallest node the pod may land on, for limits
	// given as a share of the host ("80%").
	Node workspace.HostInfo
	// LinkKey is the gateway's link public key (authorized_keys format):
	// the only key the pod's agent accepts.
	LinkKey string
	// AgentKey is the public half of the pod's agent host key, pinned in an
	// annotation (not part of the hash: every pod gets a new one).
	AgentKey string
	Labels   map[string]string // extra labels (tests); may not override ours
}

// Spec is a pod ready to be created, and what the gateway needs around it.
type Spec struct {
	Pod   *corev1.Pod
	Claim string // the project's claim, created before the pod
	Hash  string
	// GPUs is what the pod asks of gpu_resource (0: none).
	GPUs        int64
	GPUResource string
}

// BuildSpec turns a project and a user into a pod. It is pure.
func BuildSpec(in SpecInput) (Spec, error) {
	p := in.Project
	if !config.ValidProjectName(p.Name) {
		return Spec{}, fmt.Errorf("%w: project %q", workspace.ErrBadName, p.Name)
	}
	if !config.ValidUserName(in.User) {
		return Spec{}, fmt.Errorf("%w: user %q", workspace.ErrBadName, in.User)
	}
	s := p.Settings
	cuser := or(s.User, config.DefaultUser)
	if !validContainerUser(cuser) {
		return Spec{}, fmt.Errorf("%w: container user %q", workspace.ErrBadName, cuser)
	}
	home := "/home/" + cuser
	hostname := strings.ReplaceAll(or(s.Hostname, p.Name), "_", "-")

	labels := map[string]string{}
	for k, v := range in.Labels {
		if k == LabelManaged || k == LabelProject || k == LabelUser {
			return Spec{}, fmt.Errorf("extra label %q would override a sygaldry label", k)
		}
		labels[k] = v
	}
	labels[LabelManaged] = "true"
	labels[LabelProject] = p.Name
	labels[LabelUser] = in.User

	// Env: the project's, sorted, then ours, which win.
	userState, err := workspace.UserStatePaths(s)
	if err != nil {
		return Spec{}, err
	}
	own := workspace.UserEnv(p.Identities[in.User], len(userState) > 0)
	own = append(own, "SYGALDRY_PROJECT="+p.Name, "SYGALDRY_USER="+in.User)
	var env []corev1.EnvVar
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		if k == agentKeyEnv || k == workspace.WorkspaceEnv || slices.ContainsFunc(own, func(kv string) bool { return strings.HasPrefix(kv, k+"=") }) {
			continue
		}
		env = append(env, corev1.EnvVar{Name: k, Value: s.Env[k]})
	}
	for _, kv := range own {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	env = append(env, corev1.EnvVar{Name: agentKeyEnv, Value: strings.TrimSpace(in.LinkKey)})

	// Storage: the seed's four directories, the user's own state and the
	// workspace, all subPaths of the project's claim.
	claim := ClaimName(p.Name)
	var mounts []corev1.VolumeMount
	var owned []string // directories the start script gives the user when empty and root's
	for _, d := range workspace.StorageDirs {
		target := or(d.Target, home)
		mounts = append(mounts, corev1.VolumeMount{Name: claimVolume, SubPath: d.Name, MountPath: target})
		owned = append(owned, target)
	}
	if len(userState) > 0 {
		userDir := path.Join(config.UsersDir, in.User)
		mounts = append(mounts, corev1.VolumeMount{Name: claimVolume, SubPath: userDir, MountPath: workspace.UserDirTarget})
		owned = append(owned, workspace.UserDirTarget)
		for _, us := range userState {
			t := path.Join(home, us)
			mounts = append(mounts, corev1.VolumeMount{Name: claimVolume, SubPath: path.Join(userDir, "home", us), MountPath: t})
			owned = append(owned, t)
		}
	}
	if s.Workspace != "" {
		if path.IsAbs(s.Workspace) {
			return Spec{}, fmt.Errorf("workspace %q: the Kubernetes backend has no host paths; give a path inside the project's storage", s.Workspace)
		}
		if !config.ValidWorkspace(s.Workspace) {
			return Spec{}, fmt.Errorf("workspace %q: want a path inside the project's storage directory", s.Workspace)
		}
		mounts = append(mounts, corev1.VolumeMount{Name: claimVolume, SubPath: path.Clean(s.Workspace), MountPath: workspace.WorkspaceTarget})
		owned = append(owned, workspace.WorkspaceTarget)
		env = append(env, corev1.EnvVar{Name: workspace.WorkspaceEnv, Value: workspace.WorkspaceTarget})
	}
	if len(s.Mounts) > 0 {
		return Spec{}, fmt.Errorf("mounts: the Kubernetes backend has no host paths to mount (%d configured)", len(s.Mounts))
	}
	if s.IDECache != "" {
		return Spec{}, fmt.Errorf("ide_cache %q: the Kubernetes backend has no host paths; bake the archives into the image", s.IDECache)
	}
	mounts = append(mounts,
		corev1.VolumeMount{Name: agentVolume, MountPath: agentDir},
		corev1.VolumeMount{Name: shmVolume, MountPath: "/dev/shm"},
	)

	shm, err := resource.ParseQuantity(strings.ToUpper(or(s.ShmSize, config.DefaultShmSize)) + "i")
	if err != nil {
		return Spec{}, fmt.Errorf("shm_size %q: want a size like \"16g\"", s.ShmSize)
	}

	gpuResource := or(p.Kube.GPUResource, or(in.Kube.GPUResource, DefaultGPUResource))
	res, gpus, err := resourcesFor(s, gpuResource, in.Node)
	if err != nil {
		return Spec{}, err
	}
	if gpus == 0 {
		env = append(env, corev1.EnvVar{Name: "NVIDIA_VISIBLE_DEVICES", Value: "void"})
	}
	caps, err := capsFor(s)
	if err != nil {
		return Spec{}, err
	}

	f := false
	root := int64(0)
	ks := p.Kube
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        PodName(p.Name, in.User),
			Namespace:   in.Namespace,
			Labels:      labels,
			Annotations: map[string]string{},
		},
		Spec: corev1.PodSpec{
			// The agent is the pod's life: when it ends, the gateway makes a
			// new pod rather than the kubelet restarting one whose agent key
			// nobody holds any more.
			RestartPolicy: corev1.RestartPolicyNever,
			// Users get no credentials to the cluster's API.
			AutomountServiceAccountToken: &f,
			EnableServiceLinks:           &f,
			Hostname:                     hostname,
			NodeSelector:                 maps.Clone(ks.NodeSelector),
			Tolerations:                  tolerations(ks.Tolerations),
			SecurityContext: &corev1.PodSecurityContext{
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			TerminationGracePeriodSeconds: ptr(int64(10)),
			Containers: []corev1.Container{{
				Name:            mainContainer,
				Image:           or(s.Image, config.DefaultImage),
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         []string{"/bin/sh", "-c", startScript(cuser, owned)},
				Env:             env,
				Resources:       res,
				VolumeMounts:    mounts,
				SecurityContext: &corev1.SecurityContext{
					// root only for the start script (it gives empty
					// storage directories to the user), then setpriv drops
					// to the container user with no capabilities left.
					RunAsUser:                &root,
					AllowPrivilegeEscalation: &f,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: caps},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: claimVolume, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}},
				{Name: agentVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: shmVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &shm}}},
			},
		},
	}
	hash, err := podHash(pod)
	if err != nil {
		return Spec{}, err
	}
	pod.Annotations[AnnotationSpec] = hash
	if in.AgentKey != "" {
		pod.Annotations[AnnotationAgentKey] = strings.TrimSpace(in.AgentKey)
	}
	return Spec{Pod: pod, Claim: claim, Hash: hash, GPUs: gpus, GPUResource: gpuResource}, nil
}

// agentKeyEnv carries the gateway's link key to the agent (cmd/agent).
const agentKeyEnv = "SYGALDRY_AGENT_AUTHORIZED_KEY"

// DefaultGPUResource is the extended resource the NVIDIA device plugin
// advertises, when gpu_resource is not set.
const DefaultGPUResource = "nvidia.com/gpu"

// startScript is the pod's command. As root (with CHOWN, SETUID and SETGID
// only) it gives the user the storage directories that are empty and
// root's (what a fresh claim's subPaths are), puts the `sygaldry` command on
// the PATH, waits for the gateway to stream the agent in, and becomes the
// agent as the container user: PID 1, no capabilities, no new privileges.
func startScript(cuser string, owned []string) string {
	q := shellQuote
	var b strings.Builder
	b.WriteString("set -e\n")
	fmt.Fprintf(&b, "u=%s\n", q(cuser))
	b.WriteString(`uid=$(id -u "$u") || { echo "sygaldry: user $u is not in the image" >&2; exit 64; }` + "\n")
	b.WriteString(`gid=$(id -g "$u")` + "\n")
	// own DIR [ENTRY...]: DIR becomes the user's when it is root's and
	// holds nothing but the ENTRYs, the mountpoints of ours the runtime
	// made in it (~/.vscode-server in a fresh home). Anything else in it
	// is somebody's data, and its ownership the admin's choice.
	b.WriteString(`own() {
	d=$1; shift
	[ -d "$d" ] && [ "$(stat -c %u "$d")" = 0 ] || return 0
	for e in "$d"/* "$d"/.[!.]* "$d"/..?*; do
		[ -e "$e" ] || [ -L "$e" ] || continue
		ok=
		for a in "$@"; do [ "${e##*/}" = "$a" ] && ok=1; done
		[ -n "$ok" ] || return 0
	done
	chown "$uid:$gid" "$d"
}
`)
	for _, d := range ownDirs(owned) {
		b.WriteString("own " + q(d.path))
		for _, a := range d.allowed {
			b.WriteString(" " + q(a))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "ln -sf %s %s 2>/dev/null || true\n", q(agentBinary), q(workspace.CommandTarget))
	fmt.Fprintf(&b, "while [ ! -x %s ]; do sleep 0.1; done\n", q(agentBinary))
	fmt.Fprintf(&b, "chown \"$uid:$gid\" %s\n", q(agentKeyFile))
	fmt.Fprintf(&b, "export HOME=%s USER=\"$u\" LOGNAME=\"$u\"\n", q("/home/"+cuser))
	fmt.Fprintf(&b, "exec setpriv --reuid=\"$uid\" --regid=\"$gid\" --init-groups --inh-caps=-all --bounding-set=-all %s serve --listen tcp:0.0.0.0:%d --host-key %s\n",
		q(agentBinary), AgentPort, q(agentKeyFile))
	return b.String()
}

// ownDir is a directory the start script may give the user, and the
// entries (mountpoints of ours, or directories leading to one) it may
// hold for that.
type ownDir struct {
	path    string
	allowed []string
}

// ownDirs is every mount target, and every directory between one target
// and another mounted under it, with the entries that lead to the mounts
// under it, deepest first.
func ownDirs(targets []string) []ownDir {
	dirs := map[string]bool{}
	for _, t := range targets {
		dirs[t] = true
		for _, u := range targets {
			if rel, ok := strings.CutPrefix(u, t+"/"); ok {
				// the directories between t and u, which the runtime made
				for p := path.Dir(rel); p != "."; p = path.Dir(p) {
					dirs[path.Join(t, p)] = true
				}
			}
		}
	}
	var out []ownDir
	for d := range dirs {
		var allowed []string
		for _, t := range targets {
			if rel, ok := strings.CutPrefix(t, d+"/"); ok {
				first, _, _ := strings.Cut(rel, "/")
				if !slices.Contains(allowed, first) {
					allowed = append(allowed, first)
				}
			}
		}
		slices.Sort(allowed)
		out = append(out, ownDir{d, allowed})
	}
	slices.SortFunc(out, func(a, b ownDir) int {
		if c := strings.Count(b.path, "/") - strings.Count(a.path, "/"); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
	return out
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// resourcesFor maps a project's limits and GPUs onto the pod's resources.
// Limits given as a share of the host take the smallest node the pod may
// land on. Requests are kept small so a member's pod is placed even when
// others already hold their limits; the limits are what bound it.
func resourcesFor(s config.Settings, gpuResource string, node workspace.HostInfo) (corev1.ResourceRequirements, int64, error) {
	lim, err := workspace.LimitsFor(s, node)
	if err != nil {
		return corev1.ResourceRequirements{}, 0, err
	}
	r := corev1.ResourceRequirements{Limits: corev1.ResourceList{}, Requests: corev1.ResourceList{}}
	if lim.NanoCPUs > 0 {
		milli := int64(math.Ceil(float64(lim.NanoCPUs) / 1e6))
		r.Limits[corev1.ResourceCPU] = *resource.NewMilliQuantity(milli, resource.DecimalSI)
		r.Requests[corev1.ResourceCPU] = *resource.NewMilliQuantity(min(milli, 100), resource.DecimalSI)
	}
	if lim.Memory > 0 {
		r.Limits[corev1.ResourceMemory] = *resource.NewQuantity(lim.Memory, resource.BinarySI)
		r.Requests[corev1.ResourceMemory] = *resource.NewQuantity(min(lim.Memory, 256<<20), resource.BinarySI)
	}
	g := s.GPUs
	if !g.Set {
		g = config.GPUs{Set: true, Count: config.DefaultGPUs}
	}
	var gpus int64
	switch {
	case g.None():
	case g.All:
		return r, 0, fmt.Errorf(`gpus = "all": the Kubernetes backend asks the scheduler for a count; give a number`)
	case len(g.IDs) > 0 || len(g.Indices) > 0:
		return r, 0, fmt.Errorf("gpus: the Kubernetes backend cannot pick GPUs by index or UUID (the scheduler places them); give a number")
	default:
		gpus = int64(g.Count)
	}
	if gpus > 0 {
		q := *resource.NewQuantity(gpus, resource.DecimalSI)
		r.Limits[corev1.ResourceName(gpuResource)] = q
		r.Requests[corev1.ResourceName(gpuResource)] = q
	}
	return r, gpus, nil
}

// capsFor is the capabilities the container starts with: the start script's
// three (they are gone once it becomes the agent) and the project's cap_add.
func capsFor(s config.Settings) ([]corev1.Capability, error) {
	out := []corev1.Capability{"CHOWN", "SETGID", "SETUID"}
	for _, c := range s.CapAdd {
		n, ok := config.CapabilityName(c)
		if !ok {
			return nil, fmt.Errorf("cap_add: unknown capability %q", c)
		}
		if !slices.Contains(out, corev1.Capability(n)) {
			out = append(out, corev1.Capability(n))
		}
	}
	slices.Sort(out)
	return out, nil
}

func tolerations(ts []config.Toleration) []corev1.Toleration {
	var out []corev1.Toleration
	for _, t := range ts {
		out = append(out, corev1.Toleration{
			Key: t.Key, Operator: corev1.TolerationOperator(or(t.Operator, "Equal")), Value: t.Value,
			Effect: corev1.TaintEffect(t.Effect), TolerationSeconds: t.TolerationSeconds,
		})
	}
	return out
}

// podHash is the sha256 of the pod as the gateway made it, before the
// annotations it keeps out of the hash.
func podHash(p *corev1.Pod) (string, error) {
	c := p.DeepCopy()
	c.Annotations = nil
	b, err := json.Marshal(struct {
		Labels map[string]string
		Spec   corev1.PodSpec
	}{c.Labels, c.Spec})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func validContainerUser(u string) bool {
	if u == "" || len(u) > 32 {
		return false
	}
	for i, r := range u {
		switch {
		case r >= 'a' && r <= 'z', r == '_':
		case (r >= '0' && r <= '9') || r == '-':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func ptr[T any](v T) *T { return &v }
