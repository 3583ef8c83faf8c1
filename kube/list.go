package kube

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodInfo is one managed pod, for `sygctl containers`.
type PodInfo struct {
	Name, Project, User string
	Phase               string // lower case, as the Docker backend's states: running, pending, succeeded, failed
	Node                string
	Image               string
	Created             time.Time
	UpToDate            bool // its spec hash is what the configuration asks for now
	GPUs                int64
	GPUResource         string
	InUse               int       // the gateway's connections inside
	IdleSince           time.Time // when the last one left; zero while in use or unknown
	IdleStop            time.Duration
	Tracked             bool // an idle timer is armed or a connection holds it
}

// List returns the managed pods, running or not.
func (m *Manager) List(ctx context.Context) ([]PodInfo, error) {
	pods, err := m.pods().List(ctx, metav1.ListOptions{LabelSelector: m.ownSelector()})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	cfg := m.conf()
	out := make([]PodInfo, 0, len(pods.Items))
	for i := range pods.Items {
		p := &pods.Items[i]
		in := PodInfo{
			Name: p.Name, Project: p.Labels[LabelProject], User: p.Labels[LabelUser],
			Phase: strings.ToLower(string(p.Status.Phase)), Node: p.Spec.NodeName,
			Created: p.CreationTimestamp.Time,
		}
		if p.DeletionTimestamp != nil {
			in.Phase = "terminating"
		}
		for _, c := range p.Spec.Containers {
			if c.Name != mainContainer {
				continue
			}
			in.Image = c.Image
			for name, q := range c.Resources.Limits {
				if name != corev1.ResourceCPU && name != corev1.ResourceMemory && strings.Contains(string(name), "/") {
					in.GPUs, in.GPUResource = q.Value(), string(name)
				}
			}
		}
		if proj, ok := cfg.Project(in.Project); ok {
			if want, err := m.spec(ctx, proj, in.User, ""); err == nil {
				in.UpToDate = want.Hash == p.Annotations[AnnotationSpec]
			}
		}
		m.mu.Lock()
		in.IdleStop = m.idleFor
		in.InUse, in.IdleSince = m.uses.InUse(p.Name), m.uses.Since(p.Name)
		in.Tracked = in.InUse > 0 || m.uses.Armed(p.Name)
		m.mu.Unlock()
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b PodInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Jobs lists the processes a running pod's user left running.
func (m *Manager) Jobs(ctx context.Context, pod string) ([]Job, error) { return m.jobsOf(ctx, pod) }

// NodeGPUs is one node's GPUs as the scheduler counts them, and the
// managed pods holding some.
type NodeGPUs struct {
	Node        string
	Resource    string
	Capacity    int64
	Allocatable int64
	Holders     []GPUHolder
}

// GPUHolder is a managed pod holding GPUs on a node.
type GPUHolder struct {
	Pod, Project, User, Phase string
	Count                     int64
}

// NodeGPUs lists the nodes that advertise the configured GPU resource (or
// hold pods asking for it), with the pods that hold them.
func (m *Manager) NodeGPUs(ctx context.Context) ([]NodeGPUs, error) {
	cfg := m.conf()
	resources := map[string]bool{cfg.Kubernetes.GPUResource: true}
	for _, name := range cfg.ProjectNames() {
		if p, ok := cfg.Project(name); ok && p.Kube.GPUResource != "" {
			resources[p.Kube.GPUResource] = true
		}
	}
	nodes, err := m.o.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	pods, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []NodeGPUs
	for _, n := range nodes.Items {
		for res := range resources {
			rn := corev1.ResourceName(res)
			capQ, hasCap := n.Status.Capacity[rn]
			ng := NodeGPUs{Node: n.Name, Resource: res}
			if hasCap {
				ng.Capacity = capQ.Value()
			}
			if a, ok := n.Status.Allocatable[rn]; ok {
				ng.Allocatable = a.Value()
			}
			for _, p := range pods {
				if p.Node == n.Name && p.GPUResource == res && p.GPUs > 0 && (p.Phase == "running" || p.Phase == "pending") {
					ng.Holders = append(ng.Holders, GPUHolder{Pod: p.Name, Project: p.Project, User: p.User, Phase: p.Phase, Count: p.GPUs})
				}
			}
			if hasCap || len(ng.Holders) > 0 {
				out = append(out, ng)
			}
		}
	}
	slices.SortFunc(out, func(a, b NodeGPUs) int {
		return strings.Compare(a.Node+"\x00"+a.Resource, b.Node+"\x00"+b.Resource)
	})
	return out, nil
}
