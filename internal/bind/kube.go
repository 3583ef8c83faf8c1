package bind

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/kube"
)

// KubeContainers adapts the pod manager to what the gateway needs: a
// Target that makes its own link (gateway.Target.Dial).
func KubeContainers(m *kube.Manager) gateway.Containers { return kubeContainers{m} }

type kubeContainers struct{ m *kube.Manager }

func (c kubeContainers) Ensure(ctx context.Context, p config.Resolved, user string, progress io.Writer) (gateway.Target, error) {
	inst, err := c.m.Ensure(ctx, p, user, progress)
	if err != nil {
		return gateway.Target{}, err
	}
	return gateway.Target{Name: inst.Name, Instance: inst.UID, Dial: inst.Dial}, nil
}

func (c kubeContainers) Acquire(name string) { c.m.Acquire(name) }
func (c kubeContainers) Release(name string) { c.m.Release(name) }

// KubeAdminContainers adapts the pod manager to the admin API's listing.
func KubeAdminContainers(m *kube.Manager) admin.Containers { return kubeAdmin{m} }

type kubeAdmin struct{ m *kube.Manager }

func (a kubeAdmin) List(ctx context.Context) ([]api.ContainerInfo, error) {
	pods, err := a.m.List(ctx)
	if err != nil {
		return nil, err
	}
	// The running pods' jobs, asked at once (each is an exec), bounded.
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	jobs := make([][]kube.Job, len(pods))
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		if p.Phase != "running" {
			continue
		}
		wg.Go(func() { jobs[i], errs[i] = a.m.Jobs(jctx, p.Name) })
	}
	wg.Wait()
	now := time.Now()
	out := make([]api.ContainerInfo, 0, len(pods))
	for i, p := range pods {
		in := api.ContainerInfo{
			Name: p.Name, Project: p.Project, User: p.User, State: p.Phase,
			Image: p.Image, Created: p.Created, UpToDate: p.UpToDate,
			Node: p.Node, GPUs: p.GPUs, GPUResource: p.GPUResource,
			Jobs: []api.ContainerJob{},
		}
		if errs[i] != nil {
			in.JobsError = errs[i].Error()
		}
		for _, j := range jobs[i] {
			in.Jobs = append(in.Jobs, api.ContainerJob{PID: j.PID, Command: j.Command})
		}
		in.Stop = podStop(p, len(in.Jobs), now)
		out = append(out, in)
	}
	return out, nil
}

// podStop is when a pod is deleted for idleness, in the words of the
// Docker backend's stop plans.
func podStop(p kube.PodInfo, jobs int, now time.Time) api.ContainerStop {
	s := api.ContainerStop{IdleStopSeconds: int64(p.IdleStop / time.Second)}
	switch {
	case p.Phase != "running":
		s.Status = "not_running"
	case p.InUse > 0:
		s.Status = "in_use"
	case p.IdleStop <= 0:
		s.Status = "never"
	case !p.Tracked:
		s.Status = "untracked"
	case jobs > 0:
		s.Status = "postponed"
	default:
		s.Status = "scheduled"
		at := p.IdleSince.Add(p.IdleStop).UTC()
		if at.Before(now) {
			at = now.UTC()
		}
		s.At = &at
	}
	if !p.IdleSince.IsZero() {
		since := p.IdleSince.UTC()
		s.IdleSince = &since
	}
	return s
}

// KubeGPUs serves GET /v1/gpus for the Kubernetes backend: no GPUs on the
// gateway's host, the nodes' as the scheduler counts them.
func KubeGPUs(m *kube.Manager) admin.GPUs { return kubeGPUs{m} }

type kubeGPUs struct{ m *kube.Manager }

func (g kubeGPUs) GPUs(ctx context.Context) api.GPUReport {
	rep := api.GPUReport{GPUs: []api.GPUInfo{}, Nodes: []api.NodeGPUs{}}
	nodes, err := g.m.NodeGPUs(ctx)
	if err != nil {
		rep.Message = err.Error()
		return rep
	}
	for _, n := range nodes {
		an := api.NodeGPUs{Node: n.Node, Resource: n.Resource, Capacity: n.Capacity, Allocatable: n.Allocatable, Holders: []api.NodeGPUHolder{}}
		for _, h := range n.Holders {
			an.Holders = append(an.Holders, api.NodeGPUHolder{Pod: h.Pod, Project: h.Project, User: h.User, Phase: h.Phase, Count: h.Count})
		}
		rep.Nodes = append(rep.Nodes, an)
	}
	rep.Available = len(rep.Nodes) > 0
	if !rep.Available {
		rep.Message = "no node advertises a GPU resource"
	}
	return rep
}

// KubeGPULeases: the scheduler places GPUs, the gateway leases none.
func KubeGPULeases(*kube.Manager) admin.GPULeases { return noLeases{} }

type noLeases struct{}

func (noLeases) GPULeases(context.Context) []admin.GPULease { return nil }
