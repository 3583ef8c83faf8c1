package main

import (
	"context"
	"strings"
	"testing"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sygaldry/sygaldry/config"
)

const kubeDoctorDoc = `[server]
backend = "kubernetes"
[kubernetes]
kubeconfig = "/dev/null"
namespace = "ws"
[defaults]
gpus = 1
[projects.train]
members = ["carol"]
[users.carol]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZ7Xz0Fv0b3sC2i9pS8bQ0D0v9bJ8gq0x0M0Q2xv1o2 carol"]
`

// The permissions check names each right the gateway lacks, where; the GPU
// check counts what the nodes advertise. (The real API server answers the
// same questions in kube/e2e_test.go.)
func TestKubeDoctorChecks(t *testing.T) {
	cfg, err := config.Parse("gateway.toml", []byte(kubeDoctorDoc))
	if err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu1"},
		Status:     corev1.NodeStatus{Allocatable: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("4")}},
	})
	cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authzv1.SelfSubjectAccessReview)
		ra := r.Spec.ResourceAttributes
		r.Status.Allowed = !(ra.Subresource == "exec" && ra.Verb == "create") && !(ra.Resource == "nodes" && ra.Namespace != "")
		return true, r, nil
	})
	res := kubeClusterChecks(context.Background(), cs, cfg, statusFail)
	perm, gpus := res[0], res[1]
	if perm.Status != statusFail || !strings.Contains(perm.Detail, "create pods/exec in ws") || !strings.Contains(perm.Fix, "rbac.yaml") {
		t.Errorf("permissions: %+v", perm)
	}
	if strings.Contains(perm.Detail, "nodes") {
		t.Errorf("nodes were asked in a namespace, not cluster-wide: %+v", perm)
	}
	if gpus.Status != statusOK || gpus.Detail != "1 node(s) advertise 4 nvidia.com/gpu" {
		t.Errorf("GPU nodes: %+v", gpus)
	}

	cs2 := fake.NewClientset()
	cs2.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authzv1.SelfSubjectAccessReview)
		r.Status.Allowed = true
		return true, r, nil
	})
	res = kubeClusterChecks(context.Background(), cs2, cfg, statusWarn)
	if res[0].Status != statusOK {
		t.Errorf("all rights granted, yet %+v", res[0])
	}
	if res[1].Status != statusWarn || !strings.Contains(res[1].Detail, "no node advertises nvidia.com/gpu") || !strings.Contains(res[1].Fix, "device plugin") {
		t.Errorf("no GPU node: %+v", res[1])
	}
}
