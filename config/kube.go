package config

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Backends (server.backend): where the gateway runs the projects' workspaces.
const (
	BackendDocker     = "docker"     // containers on this host's Docker engine ([docker])
	BackendKubernetes = "kubernetes" // pods in a Kubernetes cluster ([kubernetes])
)

// Link modes (kubernetes.link): how the gateway reaches the agent in a pod.
const (
	KubeLinkPortForward = "port-forward" // through the API server, as kubectl port-forward
	KubeLinkPodIP       = "pod-ip"       // straight to the pod's IP: the gateway runs in the cluster
)

// Access modes of a project's storage claim (kubernetes.access_mode).
const (
	KubeReadWriteMany = "ReadWriteMany" // the members' pods may run on different nodes
	KubeReadWriteOnce = "ReadWriteOnce" // one node mounts the claim: the members' pods share it
)

// Defaults of the [kubernetes] keys that have a fixed one.
const (
	DefaultKubeNamespace      = "sygaldry"
	DefaultKubeStorageSize    = "100Gi"
	DefaultKubeGPUResource    = "nvidia.com/gpu"
	DefaultKubePendingTimeout = 2 * time.Minute
	DefaultKubeStartTimeout   = 5 * time.Minute
)

// Kubernetes configures the Kubernetes backend (server.backend =
// "kubernetes"). The table may be present with the Docker backend: it is
// validated and otherwise unused, so an admin can prepare a switch.
type Kubernetes struct {
	Kubeconfig   string `toml:"kubeconfig"`    // absolute path; empty: in-cluster config (the pod's service account)
	Namespace    string `toml:"namespace"`     // where pods and claims are made; empty: "sygaldry"
	StorageClass string `toml:"storage_class"` // of the projects' claims; empty: the cluster's default class
	StorageSize  string `toml:"storage_size"`  // per-project claim size, a quantity ("100Gi"); empty: "100Gi"
	AccessMode   string `toml:"access_mode"`   // "ReadWriteMany" | "ReadWriteOnce"; empty: ReadWriteMany

	NodeSelector map[string]string `toml:"node_selector"` // labels a pod's node must have; projects add to it
	Tolerations  []Toleration      `toml:"tolerations"`   // taints pods tolerate; projects append to them
	GPUResource  string            `toml:"gpu_resource"`  // the extended resource a GPU is requested as; empty: "nvidia.com/gpu"

	// Link is how the gateway reaches the agent in a pod: "pod-ip" or
	// "port-forward". Empty: pod-ip when kubeconfig is empty (the gateway
	// runs in the cluster), else port-forward. See KubeLink.
	Link string `toml:"link"`

	PendingTimeout Duration `toml:"pending_timeout"` // how long a login waits for its pod to be scheduled; unset: 2m
	StartTimeout   Duration `toml:"start_timeout"`   // from scheduled to the agent answering (image pulls); unset: 5m
}

// Toleration is one entry of tolerations, with the meaning of a pod's
// spec.tolerations entry.
type Toleration struct {
	Key      string `toml:"key"`      // taint key; empty with operator Exists: every taint
	Operator string `toml:"operator"` // "Exists" | "Equal"; empty: Equal
	Value    string `toml:"value"`    // with Equal: the taint's value
	Effect   string `toml:"effect"`   // "NoSchedule" | "PreferNoSchedule" | "NoExecute"; empty: every effect

	// TolerationSeconds (NoExecute only): how long a running pod stays
	// after the taint appears. Unset: forever.
	TolerationSeconds *int64 `toml:"toleration_seconds"`
}

// String writes t as kubectl describe does ("key=value:Effect op=Exists
// for=30s"); Diff shows tolerations this way rather than as pointers.
func (t Toleration) String() string {
	s := t.Key
	if t.Value != "" {
		s += "=" + t.Value
	}
	if t.Effect != "" {
		s += ":" + t.Effect
	}
	if t.Operator != "" {
		s += " op=" + t.Operator
	}
	if t.TolerationSeconds != nil {
		s += fmt.Sprintf(" for=%ds", *t.TolerationSeconds)
	}
	return strings.TrimSpace(s)
}

// KubeOverrides is a [projects.NAME.kubernetes] table: the only [kubernetes]
// keys a project may change. Other keys there are unknown-key errors.
type KubeOverrides struct {
	NodeSelector map[string]string `toml:"node_selector"` // added to [kubernetes]'s; the project's value wins for a key in both
	Tolerations  []Toleration      `toml:"tolerations"`   // appended to [kubernetes]'s
	StorageClass string            `toml:"storage_class"` // empty: [kubernetes]'s
	GPUResource  string            `toml:"gpu_resource"`  // empty: [kubernetes]'s
}

// KubeSettings are a project's effective Kubernetes settings: [kubernetes]
// with the project's overrides applied.
type KubeSettings struct {
	NodeSelector map[string]string
	Tolerations  []Toleration
	StorageClass string
	GPUResource  string
}

// KubeLink returns the link mode in force: kubernetes.link, or when empty
// pod-ip for an in-cluster gateway (no kubeconfig) and port-forward for one
// outside the cluster, which cannot reach pod IPs.
func (c *Config) KubeLink() string {
	k := c.Kubernetes
	switch {
	case k.Link != "":
		return k.Link
	case k.Kubeconfig == "":
		return KubeLinkPodIP
	}
	return KubeLinkPortForward
}

// fillKubeDefaults sets the backend and the [kubernetes] keys that have a
// fixed default. Link has none (KubeLink), nor has storage_class (the
// cluster's default class).
func (c *Config) fillKubeDefaults() {
	c.Server.Backend = or(c.Server.Backend, BackendDocker)
	k := &c.Kubernetes
	k.Namespace = or(k.Namespace, DefaultKubeNamespace)
	k.StorageSize = or(k.StorageSize, DefaultKubeStorageSize)
	k.AccessMode = or(k.AccessMode, KubeReadWriteMany)
	k.GPUResource = or(k.GPUResource, DefaultKubeGPUResource)
	if !k.PendingTimeout.Set {
		k.PendingTimeout = Duration{DefaultKubePendingTimeout, true}
	}
	if !k.StartTimeout.Set {
		k.StartTimeout = Duration{DefaultKubeStartTimeout, true}
	}
}

// resolveKube merges a project's overrides into [kubernetes]'s values.
func resolveKube(k Kubernetes, o *KubeOverrides) KubeSettings {
	s := KubeSettings{
		NodeSelector: maps.Clone(k.NodeSelector),
		Tolerations:  slices.Clone(k.Tolerations),
		StorageClass: k.StorageClass,
		GPUResource:  k.GPUResource,
	}
	if o == nil {
		return s
	}
	if s.NodeSelector == nil && len(o.NodeSelector) > 0 {
		s.NodeSelector = map[string]string{}
	}
	maps.Copy(s.NodeSelector, o.NodeSelector)
	s.Tolerations = append(s.Tolerations, o.Tolerations...)
	s.StorageClass = or(o.StorageClass, s.StorageClass)
	s.GPUResource = or(o.GPUResource, s.GPUResource)
	return s
}

// The Kubernetes API's own rules for these names (k8s.io/apimachinery's
// validation), restated here so that config/ does not import the client:
// a mistake is refused at load with its line, not by the API server at a
// user's login.
var (
	// dns1123LabelRE: a namespace (63 at most).
	dns1123LabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// dns1123SubdomainRE: a label key's prefix, a resource's domain (253 at most).
	dns1123SubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	// labelNameRE: a label key's name and a label value (63 at most).
	labelNameRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	// resourceNameRE: the name of a resource such as nvidia.com/gpu, lowercase.
	resourceNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`)
	// quantityRE: a storage quantity: digits, or a decimal with a binary
	// (Ki..Ei) or decimal (k..E) suffix. Exponents and milli are not sizes.
	quantityRE = regexp.MustCompile(`^([0-9]+|[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E))$`)
)

// validQuantity reports whether s is a storage size the Kubernetes API
// accepts as a claim's request, and not zero.
func validQuantity(s string) bool {
	return quantityRE.MatchString(s) && strings.Trim(strings.TrimRight(s, "KMGTPEik"), "0.") != ""
}

// validLabelKey reports whether k is a label key: [prefix/]name.
func validLabelKey(k string) bool {
	prefix, name, ok := strings.Cut(k, "/")
	if !ok {
		name, prefix = prefix, ""
	} else if len(prefix) > 253 || !dns1123SubdomainRE.MatchString(prefix) {
		return false
	}
	return len(name) <= 63 && labelNameRE.MatchString(name)
}

// validResourceName reports whether r is a qualified resource name
// "domain/name", lowercase, as an extended resource is named.
func validResourceName(r string) bool {
	domain, name, ok := strings.Cut(r, "/")
	return ok && len(domain) <= 253 && dns1123SubdomainRE.MatchString(domain) &&
		len(name) <= 63 && resourceNameRE.MatchString(name)
}

// validateKube checks server.backend, [kubernetes] and the projects'
// [projects.NAME.kubernetes] tables.
func (c *Config) validateKube(bad func(path, format string, args ...any)) {
	if b := c.Server.Backend; b != BackendDocker && b != BackendKubernetes {
		bad("server.backend", "server.backend %q: want %q or %q", b, BackendDocker, BackendKubernetes)
	}
	k := c.Kubernetes
	if k.Kubeconfig != "" && !path.IsAbs(k.Kubeconfig) {
		bad("kubernetes.kubeconfig", "kubernetes.kubeconfig %q: must be an absolute path (empty: the in-cluster config)", k.Kubeconfig)
	}
	if len(k.Namespace) > 63 || !dns1123LabelRE.MatchString(k.Namespace) {
		bad("kubernetes.namespace", "kubernetes.namespace %q: want a DNS label (lowercase letters, digits and -, starting and ending with a letter or digit, 63 at most)", k.Namespace)
	}
	if !validQuantity(k.StorageSize) {
		bad("kubernetes.storage_size", "kubernetes.storage_size %q: want a size such as \"100Gi\", \"500G\" or \"1.5Ti\" (suffixes Ki Mi Gi Ti Pi Ei k M G T P E), not zero", k.StorageSize)
	}
	if k.AccessMode != KubeReadWriteMany && k.AccessMode != KubeReadWriteOnce {
		bad("kubernetes.access_mode", "kubernetes.access_mode %q: want %q or %q", k.AccessMode, KubeReadWriteMany, KubeReadWriteOnce)
	}
	if k.Link != "" && k.Link != KubeLinkPortForward && k.Link != KubeLinkPodIP {
		bad("kubernetes.link", "kubernetes.link %q: want %q or %q (empty: %s in the cluster, else %s)", k.Link, KubeLinkPodIP, KubeLinkPortForward, KubeLinkPodIP, KubeLinkPortForward)
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"kubernetes.pending_timeout", k.PendingTimeout}, {"kubernetes.start_timeout", k.StartTimeout}} {
		if d.v.Set && d.v.D <= 0 {
			bad(d.key, "%s: must be positive (e.g. \"2m\")", d.key)
		}
	}
	validateKubeScheduling("kubernetes", k.NodeSelector, k.Tolerations, k.GPUResource, bad)
	for _, name := range slices.Sorted(maps.Keys(c.Projects)) {
		if p := c.Projects[name]; p != nil && p.Kubernetes != nil && ValidProjectName(name) {
			o := p.Kubernetes
			validateKubeScheduling("projects."+name+".kubernetes", o.NodeSelector, o.Tolerations, o.GPUResource, bad)
		}
	}
}

// validateKubeScheduling checks the keys [kubernetes] and a project's
// overrides have in common; key is the table's path.
func validateKubeScheduling(key string, sel map[string]string, tols []Toleration, gpu string, bad func(path, format string, args ...any)) {
	if gpu != "" && !validResourceName(gpu) {
		bad(key+".gpu_resource", "%s.gpu_resource %q: want a resource name \"domain/name\" in lowercase, such as %q", key, gpu, DefaultKubeGPUResource)
	}
	for _, l := range slices.Sorted(maps.Keys(sel)) {
		v := sel[l]
		switch {
		case !validLabelKey(l):
			bad(key+".node_selector."+l, "%s.node_selector: %q is not a label key ([prefix/]name: letters, digits, -, _ and ., 63 at most in the name)", key, l)
		case v == "" || len(v) > 63 || !labelNameRE.MatchString(v):
			bad(key+".node_selector."+l, "%s.node_selector.%q = %q: want a label value (letters, digits, -, _ and ., 63 at most, not empty)", key, l, v)
		}
	}
	for i, t := range tols {
		at := fmt.Sprintf("%s.tolerations.%d", key, i)
		what := fmt.Sprintf("%s.tolerations[%d]", key, i)
		switch t.Operator {
		case "", "Equal":
			if t.Key == "" {
				bad(at, "%s: an empty key needs operator = \"Exists\" (it tolerates every taint)", what)
			}
		case "Exists":
			if t.Value != "" {
				bad(at, "%s: operator \"Exists\" takes no value (value = %q); use \"Equal\" to match it", what, t.Value)
			}
		default:
			bad(at, "%s: operator %q: want \"Exists\" or \"Equal\"", what, t.Operator)
		}
		if t.Key != "" && !validLabelKey(t.Key) {
			bad(at, "%s: key %q is not a taint key ([prefix/]name)", what, t.Key)
		}
		switch t.Effect {
		case "", "NoSchedule", "PreferNoSchedule", "NoExecute":
		default:
			bad(at, "%s: effect %q: want \"NoSchedule\", \"PreferNoSchedule\" or \"NoExecute\" (empty: every effect)", what, t.Effect)
		}
		if t.TolerationSeconds != nil {
			if t.Effect != "NoExecute" {
				bad(at, "%s: toleration_seconds applies to effect \"NoExecute\" only", what)
			} else if *t.TolerationSeconds < 0 {
				bad(at, "%s: toleration_seconds = %d: must not be negative", what, *t.TolerationSeconds)
			}
		}
	}
}
