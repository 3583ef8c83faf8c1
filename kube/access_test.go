package kube

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// RBACManifest is etc/kubernetes/rbac.yaml's objects, decoded (for this
// package's tests and the end-to-end test, which applies them).
func RBACManifest(t testing.TB) []runtime.Object {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "etc", "kubernetes", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []runtime.Object
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var raw runtime.RawExtension
		if err := dec.Decode(&raw); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("rbac.yaml: %v", err)
		}
		if len(bytes.TrimSpace(raw.Raw)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw.Raw, nil, nil)
		if err != nil {
			t.Fatalf("rbac.yaml: %v", err)
		}
		out = append(out, obj)
	}
}

// etc/kubernetes/rbac.yaml grants exactly what the backend does (and what
// sygctl doctor checks): no right missing, none to spare.
func TestRBACManifestGrantsWhatTheBackendNeeds(t *testing.T) {
	var granted []string
	for _, obj := range RBACManifest(t) {
		var rules []rbacv1.PolicyRule
		scope := ""
		switch o := obj.(type) {
		case *rbacv1.Role:
			rules = o.Rules
		case *rbacv1.ClusterRole:
			rules, scope = o.Rules, " (cluster)"
		}
		for _, r := range rules {
			if !slices.Equal(r.APIGroups, []string{""}) {
				t.Errorf("a rule outside the core group: %v", r.APIGroups)
			}
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					granted = append(granted, v+" "+res+scope)
				}
			}
		}
	}
	var need []string
	for _, a := range RequiredAccess(config.KubeLinkPortForward) {
		s := a.String()
		if a.ClusterWide {
			s += " (cluster)"
		}
		need = append(need, s)
	}
	slices.Sort(granted)
	slices.Sort(need)
	if !slices.Equal(granted, need) {
		t.Errorf("rbac.yaml grants\n  %s\nthe backend needs\n  %s", strings.Join(granted, "\n  "), strings.Join(need, "\n  "))
	}
	for _, a := range RequiredAccess(config.KubeLinkPodIP) {
		if a.Subresource == "portforward" {
			t.Error("a gateway at the pods' IPs is asked for port-forward")
		}
	}
}
