package kube

import (
	"context"
	"fmt"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sygaldry/sygaldry/config"
)

// Access is one thing the gateway does through the API: a verb on a
// resource (with its subresource), in the namespace or cluster-wide.
type Access struct {
	Verb, Resource, Subresource string
	ClusterWide                 bool
	Why                         string
}

func (a Access) String() string {
	r := a.Resource
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	return a.Verb + " " + r
}

// RequiredAccess is everything the backend asks of the API server with the
// link mode given: the rights etc/kubernetes/rbac.yaml grants (a test keeps
// the two equal), and what `sygctl doctor` checks.
func RequiredAccess(link string) []Access {
	var out []Access
	for _, v := range []string{"get", "list", "watch", "create", "delete"} {
		out = append(out, Access{Verb: v, Resource: "pods", Why: "the pod per (project, user)"})
	}
	for _, v := range []string{"create", "get"} {
		out = append(out, Access{Verb: v, Resource: "pods", Subresource: "exec", Why: "the agent's delivery, the idle stop's job listing"})
	}
	if link != config.KubeLinkPodIP {
		for _, v := range []string{"create", "get"} {
			out = append(out, Access{Verb: v, Resource: "pods", Subresource: "portforward", Why: "the link from outside the cluster"})
		}
	}
	for _, v := range []string{"get", "list", "create"} {
		out = append(out, Access{Verb: v, Resource: "persistentvolumeclaims", Why: "the project's claim"})
	}
	for _, v := range []string{"get", "list"} {
		out = append(out, Access{Verb: v, Resource: "nodes", ClusterWide: true, Why: "limits as a share of a node, sygctl gpus"})
	}
	return out
}

// MissingAccess asks the API server, for each of RequiredAccess, whether the
// client's own identity may do it in namespace (SelfSubjectAccessReview,
// which every authenticated identity may ask), and returns what it may not.
func MissingAccess(ctx context.Context, cs kubernetes.Interface, namespace, link string) ([]Access, error) {
	var missing []Access
	for _, a := range RequiredAccess(link) {
		ra := &authzv1.ResourceAttributes{Verb: a.Verb, Resource: a.Resource, Subresource: a.Subresource}
		if !a.ClusterWide {
			ra.Namespace = namespace
		}
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: ra},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("ask whether it may %s: %w", a, err)
		}
		if !r.Status.Allowed {
			missing = append(missing, a)
		}
	}
	return missing, nil
}

// RESTConfig is the client configuration of kubernetes.kubeconfig: from
// that file, or the pod's service account when it is empty (the gateway
// runs in the cluster).
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes: no kubeconfig set and not running in a cluster: %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes.kubeconfig %s: %w", kubeconfig, err)
	}
	return rc, nil
}
