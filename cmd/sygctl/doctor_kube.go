package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/kube"
)

// kubeDoctor checks what a gateway with the Kubernetes backend needs, with
// the credentials its config names: the API server, the rights of
// etc/kubernetes/rbac.yaml in its namespace (asked of the API server as
// that identity), and nodes advertising the GPU resource the projects ask
// for. The host's own driver and engine do not matter there.
func kubeDoctor(ctx context.Context, cfg *config.Config, gpuMissing string) []checkResult {
	api := checkResult{Check: "kubernetes API"}
	rc, err := kube.RESTConfig(cfg.Kubernetes.Kubeconfig)
	var cs kubernetes.Interface
	if err == nil {
		cs, err = kubernetes.NewForConfig(rc)
	}
	if err != nil {
		api.Status, api.Detail = statusFail, err.Error()
		api.Fix = "set kubernetes.kubeconfig to a kubeconfig of the gateway's service account, or run the gateway in the cluster"
		return []checkResult{api}
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		api.Status, api.Detail = statusFail, fmt.Sprintf("%s: %v", rc.Host, err)
		api.Fix = "check that the API server is up and that kubernetes.kubeconfig's address, CA and token are right"
		return []checkResult{api}
	}
	api.Status, api.Detail = statusOK, fmt.Sprintf("Kubernetes %s at %s", v.GitVersion, rc.Host)
	return append([]checkResult{api}, kubeClusterChecks(ctx, cs, cfg, gpuMissing)...)
}

// kubeClusterChecks are the checks after the API answered.
func kubeClusterChecks(ctx context.Context, cs kubernetes.Interface, cfg *config.Config, gpuMissing string) []checkResult {
	ns, link := cfg.Kubernetes.Namespace, cfg.KubeLink()
	perm := checkResult{Check: "kubernetes permissions"}
	missing, err := kube.MissingAccess(ctx, cs, ns, link)
	switch {
	case err != nil:
		perm.Status, perm.Detail = statusFail, err.Error()
		perm.Fix = "the gateway's identity could not ask the API server what it may do"
	case len(missing) > 0:
		var ms []string
		for _, a := range missing {
			where := "in " + ns
			if a.ClusterWide {
				where = "cluster-wide"
			}
			ms = append(ms, fmt.Sprintf("%s %s (%s)", a, where, a.Why))
		}
		perm.Status, perm.Detail = statusFail, "the gateway may not: "+strings.Join(ms, "; ")
		perm.Fix = fmt.Sprintf("kubectl apply -f etc/kubernetes/rbac.yaml (namespace %s) and use its service account", ns)
	default:
		perm.Status = statusOK
		perm.Detail = fmt.Sprintf("the gateway may do the %d things it needs (namespace %s, link %s)", len(kube.RequiredAccess(link)), ns, link)
	}
	return []checkResult{perm, kubeGPUCheck(ctx, cs, cfg, gpuMissing)}
}

// kubeGPUCheck counts the GPUs the nodes advertise, per resource the
// projects ask for.
func kubeGPUCheck(ctx context.Context, cs kubernetes.Interface, cfg *config.Config, gpuMissing string) checkResult {
	res := checkResult{Check: "GPU nodes"}
	wanted := map[string]bool{}
	for _, name := range cfg.ProjectNames() {
		if p, ok := cfg.Project(name); ok && !p.GPUs.None() {
			wanted[p.Kube.GPUResource] = true
		}
	}
	if len(wanted) == 0 {
		res.Status, res.Detail = statusOK, "no project asks for GPUs"
		return res
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		res.Status, res.Detail = gpuMissing, "list nodes: "+err.Error()
		return res
	}
	var found, lacking []string
	for _, r := range sortedKeys(wanted) {
		var n, total int64
		for _, node := range nodes.Items {
			if q, ok := node.Status.Allocatable[corev1.ResourceName(r)]; ok && q.Value() > 0 {
				n++
				total += q.Value()
			}
		}
		if n == 0 {
			lacking = append(lacking, r)
			continue
		}
		found = append(found, fmt.Sprintf("%d node(s) advertise %d %s", n, total, r))
	}
	res.Status, res.Detail = statusOK, strings.Join(found, "; ")
	if len(lacking) > 0 {
		res.Status = gpuMissing
		res.Detail = strings.TrimPrefix(strings.Join(append(found, "no node advertises "+strings.Join(lacking, ", ")), "; "), "; ")
		res.Fix = "run NVIDIA's device plugin (or the GPU operator) on the GPU nodes, or fix the projects' gpu_resource"
	}
	return res
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
