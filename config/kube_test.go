package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Every [kubernetes] check refuses bad input with the line of the very key
// (or list entry) and a message that says what is wanted.
func TestKubeErrorsNameFileAndLine(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		line int
		want string // the message, after "f.toml:LINE: "
	}{
		{"backend", "[server]\n\nbackend = \"k8s\"\n", 3, `server.backend "k8s": want "docker" or "kubernetes"`},
		{"relative kubeconfig", "[kubernetes]\nkubeconfig = \"kube/config\"\n", 2, `kubernetes.kubeconfig "kube/config": must be an absolute path`},
		{"namespace uppercase", "[kubernetes]\nnamespace = \"Sygaldry\"\n", 2, `kubernetes.namespace "Sygaldry": want a DNS label`},
		{"namespace trailing dash", "[kubernetes]\nnamespace = \"syg-\"\n", 2, `kubernetes.namespace "syg-": want a DNS label`},
		{"namespace dot", "[kubernetes]\nnamespace = \"a.b\"\n", 2, `kubernetes.namespace "a.b": want a DNS label`},
		{"namespace too long", "[kubernetes]\nnamespace = \"" + strings.Repeat("a", 64) + "\"\n", 2, `kubernetes.namespace "` + strings.Repeat("a", 64) + `": want a DNS label`},
		{"storage size unit", "[kubernetes]\nstorage_size = \"100GB\"\n", 2, `kubernetes.storage_size "100GB": want a size`},
		{"storage size zero", "[kubernetes]\nstorage_size = \"0Gi\"\n", 2, `kubernetes.storage_size "0Gi": want a size`},
		{"storage size decimal without unit", "[kubernetes]\nstorage_size = \"1.5\"\n", 2, `kubernetes.storage_size "1.5"`},
		{"storage size milli", "[kubernetes]\nstorage_size = \"100m\"\n", 2, `kubernetes.storage_size "100m"`},
		{"storage size exponent", "[kubernetes]\nstorage_size = \"1e9\"\n", 2, `kubernetes.storage_size "1e9"`},
		{"access mode", "[kubernetes]\naccess_mode = \"RWX\"\n", 2, `kubernetes.access_mode "RWX": want "ReadWriteMany" or "ReadWriteOnce"`},
		{"link", "[kubernetes]\nlink = \"direct\"\n", 2, `kubernetes.link "direct": want "pod-ip" or "port-forward"`},
		{"pending timeout zero", "[kubernetes]\npending_timeout = \"0\"\n", 2, `kubernetes.pending_timeout: must be positive`},
		{"start timeout zero", "[kubernetes]\n\nstart_timeout = \"0s\"\n", 3, `kubernetes.start_timeout: must be positive`},
		{"start timeout negative", "[kubernetes]\nstart_timeout = \"-1m\"\n", 2, `kubernetes.start_timeout: bad duration "-1m": negative`},
		{"gpu resource without domain", "[kubernetes]\ngpu_resource = \"gpu\"\n", 2, `kubernetes.gpu_resource "gpu": want a resource name "domain/name" in lowercase`},
		{"gpu resource uppercase", "[kubernetes]\ngpu_resource = \"nvidia.com/GPU\"\n", 2, `kubernetes.gpu_resource "nvidia.com/GPU": want a resource name`},
		{"gpu resource bad domain", "[kubernetes]\ngpu_resource = \"-nvidia.com/gpu\"\n", 2, `kubernetes.gpu_resource "-nvidia.com/gpu"`},
		{"node selector empty value", "[kubernetes]\nnode_selector = { gpu = \"\" }\n", 2, `kubernetes.node_selector."gpu" = "": want a label value`},
		{"node selector bad value", "[kubernetes.node_selector]\nzone = \"a\"\ngpu = \"a 100\"\n", 3, `kubernetes.node_selector."gpu" = "a 100": want a label value`},
		{"node selector bad key", "[kubernetes.node_selector]\n\"bad key\" = \"x\"\n", 2, `kubernetes.node_selector: "bad key" is not a label key`},
		{"node selector empty key", "[kubernetes]\nnode_selector = { \"\" = \"x\" }\n", 2, `kubernetes.node_selector: "" is not a label key`},
		{"node selector bad prefix", "[kubernetes]\nnode_selector = { \"Example.com/gpu\" = \"x\" }\n", 2, `kubernetes.node_selector: "Example.com/gpu" is not a label key`},
		{"toleration operator", "[[kubernetes.tolerations]]\nkey = \"gpu\"\noperator = \"In\"\n", 1, `kubernetes.tolerations[0]: operator "In": want "Exists" or "Equal"`},
		{"toleration exists with value", "[[kubernetes.tolerations]]\nkey = \"a\"\n\n[[kubernetes.tolerations]]\nkey = \"gpu\"\noperator = \"Exists\"\nvalue = \"x\"\n", 4,
			`kubernetes.tolerations[1]: operator "Exists" takes no value`},
		{"toleration effect", "[kubernetes]\ntolerations = [\n  { key = \"a\" },\n  { key = \"b\", effect = \"NoRun\" },\n]\n", 4,
			`kubernetes.tolerations[1]: effect "NoRun": want "NoSchedule", "PreferNoSchedule" or "NoExecute"`},
		{"toleration empty key equal", "[kubernetes]\ntolerations = [{ value = \"x\" }]\n", 2, `kubernetes.tolerations[0]: an empty key needs operator = "Exists"`},
		{"toleration bad key", "[kubernetes]\ntolerations = [{ key = \"a b\", operator = \"Exists\" }]\n", 2, `kubernetes.tolerations[0]: key "a b" is not a taint key`},
		{"toleration seconds without NoExecute", "[kubernetes]\ntolerations = [{ key = \"a\", effect = \"NoSchedule\", toleration_seconds = 30 }]\n", 2,
			`kubernetes.tolerations[0]: toleration_seconds applies to effect "NoExecute" only`},
		{"toleration seconds negative", "[kubernetes]\ntolerations = [{ key = \"a\", effect = \"NoExecute\", toleration_seconds = -1 }]\n", 2,
			`kubernetes.tolerations[0]: toleration_seconds = -1: must not be negative`},
		{"project gpu resource", "[projects.p]\nmembers = []\n[projects.p.kubernetes]\ngpu_resource = \"amd\"\n", 4, `projects.p.kubernetes.gpu_resource "amd": want a resource name`},
		{"project node selector", "[projects.p]\nmembers = []\nkubernetes.node_selector = { gpu = \"\" }\n", 3, `projects.p.kubernetes.node_selector."gpu" = "": want a label value`},
		{"project toleration", "[projects.p]\nmembers = []\n[[projects.p.kubernetes.tolerations]]\noperator = \"Exists\"\n[[projects.p.kubernetes.tolerations]]\nkey = \"k\"\neffect = \"Never\"\n", 5,
			`projects.p.kubernetes.tolerations[1]: effect "Never"`},
		{"project key not overridable", "[projects.p]\nmembers = []\n[projects.p.kubernetes]\nstorage_class = \"fast\"\nnamespace = \"other\"\n", 5, `unknown key "projects.p.kubernetes.namespace"`},
		{"project link not overridable", "[projects.p]\nmembers = []\n\n[projects.p.kubernetes]\nlink = \"pod-ip\"\n", 5, `unknown key "projects.p.kubernetes.link"`},
		{"no kubernetes in defaults", "[defaults]\nimage = \"x\"\n[defaults.kubernetes]\ngpu_resource = \"a.b/c\"\n", 3, `unknown key "defaults.kubernetes"`},
		{"unknown kubernetes key", "[kubernetes]\nnamespace = \"x\"\nnamepsace = \"y\"\n", 3, `unknown key "kubernetes.namepsace"`},
		{"unknown toleration key", "[[kubernetes.tolerations]]\nkey = \"a\"\nseconds = 3\n", 3, `unknown key "kubernetes.tolerations.seconds"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(tt.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			if want := fmt.Sprintf("f.toml:%d: %s", tt.line, tt.want); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\nwant it to contain %q", err, want)
			}
		})
	}
}

func TestKubeValidValues(t *testing.T) {
	for _, doc := range []string{
		"[server]\nbackend = \"kubernetes\"\n",
		"[server]\nbackend = \"docker\"\n",
		"[kubernetes]\nstorage_size = \"100\"\n",
		"[kubernetes]\nstorage_size = \"1.5Ti\"\n",
		"[kubernetes]\nstorage_size = \"0.5Gi\"\n",
		"[kubernetes]\nstorage_size = \"500G\"\n",
		"[kubernetes]\nstorage_size = \"10k\"\n",
		"[kubernetes]\nnamespace = \"a\"\n",
		"[kubernetes]\nnamespace = \"" + strings.Repeat("a", 63) + "\"\n",
		"[kubernetes]\naccess_mode = \"ReadWriteOnce\"\nlink = \"port-forward\"\n",
		"[kubernetes]\ngpu_resource = \"amd.com/gpu\"\n",
		"[kubernetes]\ngpu_resource = \"nvidia.com/mig-1g.10gb\"\n",
		"[kubernetes]\nkubeconfig = \"/etc/sygaldry/kubeconfig\"\n",
		"[kubernetes]\nnode_selector = { \"node.kubernetes.io/instance-type\" = \"p5.48xlarge\", gpu = \"H100_80GB\" }\n",
		"[kubernetes]\ntolerations = [{ operator = \"Exists\" }]\n",
		"[kubernetes]\ntolerations = [{ key = \"nvidia.com/gpu\", operator = \"Exists\", effect = \"NoSchedule\" }]\n",
		"[kubernetes]\ntolerations = [{ key = \"spot\", operator = \"Equal\", value = \"true\", effect = \"NoExecute\", toleration_seconds = 0 }]\n",
	} {
		if _, err := Parse("f.toml", []byte(doc)); err != nil {
			t.Errorf("%q: %v", doc, err)
		}
	}
}

func TestKubeDefaults(t *testing.T) {
	c, err := Parse("f.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Backend != BackendDocker {
		t.Errorf("backend = %q, want %q", c.Server.Backend, BackendDocker)
	}
	want := Kubernetes{
		Namespace:      DefaultKubeNamespace,
		StorageSize:    DefaultKubeStorageSize,
		AccessMode:     KubeReadWriteMany,
		GPUResource:    DefaultKubeGPUResource,
		PendingTimeout: Duration{2 * time.Minute, true},
		StartTimeout:   Duration{5 * time.Minute, true},
	}
	if !reflect.DeepEqual(c.Kubernetes, want) {
		t.Errorf("kubernetes = %+v\nwant %+v", c.Kubernetes, want)
	}

	c, err = Parse("f.toml", []byte("[kubernetes]\nnamespace = \"gpu-lab\"\nstorage_size = \"2Ti\"\npending_timeout = \"30s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k := c.Kubernetes; k.Namespace != "gpu-lab" || k.StorageSize != "2Ti" || k.PendingTimeout.D != 30*time.Second || k.StartTimeout.D != DefaultKubeStartTimeout {
		t.Errorf("set keys were not kept, or unset ones not filled: %+v", k)
	}
}

func TestKubeLink(t *testing.T) {
	for _, tc := range []struct{ kubeconfig, link, want string }{
		{"", "", KubeLinkPodIP},
		{"/etc/kubeconfig", "", KubeLinkPortForward},
		{"", KubeLinkPortForward, KubeLinkPortForward},
		{"/etc/kubeconfig", KubeLinkPodIP, KubeLinkPodIP},
	} {
		doc := fmt.Sprintf("[kubernetes]\nkubeconfig = %q\nlink = %q\n", tc.kubeconfig, tc.link)
		c, err := Parse("f.toml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.KubeLink(); got != tc.want {
			t.Errorf("kubeconfig %q link %q: KubeLink = %q, want %q", tc.kubeconfig, tc.link, got, tc.want)
		}
	}
}

// A project's overrides: map keys win, tolerations are appended, strings
// replace when set; [kubernetes] itself is left as it was.
func TestKubeProjectOverrides(t *testing.T) {
	doc := `
[kubernetes]
storage_class = "standard"
node_selector = { pool = "gpu", zone = "a" }
[[kubernetes.tolerations]]
key = "nvidia.com/gpu"
operator = "Exists"
effect = "NoSchedule"

[projects.big]
members = []
[projects.big.kubernetes]
storage_class = "fast-rwx"
gpu_resource = "nvidia.com/mig-3g.40gb"
node_selector = { pool = "h100", disk = "nvme" }
[[projects.big.kubernetes.tolerations]]
key = "dedicated"
value = "big"
effect = "NoExecute"
toleration_seconds = 60

[projects.plain]
members = []
`
	c, err := Parse("f.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	gpuTol := Toleration{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoSchedule"}
	sixty := int64(60)
	big, _ := c.Project("big")
	want := KubeSettings{
		NodeSelector: map[string]string{"pool": "h100", "zone": "a", "disk": "nvme"},
		Tolerations:  []Toleration{gpuTol, {Key: "dedicated", Value: "big", Effect: "NoExecute", TolerationSeconds: &sixty}},
		StorageClass: "fast-rwx",
		GPUResource:  "nvidia.com/mig-3g.40gb",
	}
	if !reflect.DeepEqual(big.Kube, want) {
		t.Errorf("big: %+v\nwant %+v", big.Kube, want)
	}
	plain, _ := c.Project("plain")
	want = KubeSettings{
		NodeSelector: map[string]string{"pool": "gpu", "zone": "a"},
		Tolerations:  []Toleration{gpuTol},
		StorageClass: "standard",
		GPUResource:  DefaultKubeGPUResource,
	}
	if !reflect.DeepEqual(plain.Kube, want) {
		t.Errorf("plain: %+v\nwant %+v", plain.Kube, want)
	}
	if !maps.Equal(c.Kubernetes.NodeSelector, map[string]string{"pool": "gpu", "zone": "a"}) || len(c.Kubernetes.Tolerations) != 1 {
		t.Errorf("resolving a project changed [kubernetes]: %+v", c.Kubernetes)
	}

	// A project's map on a [kubernetes] without one.
	c, err = Parse("f.toml", []byte("[projects.p]\nmembers = []\nkubernetes.node_selector = { pool = \"a\" }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := c.Project("p"); !maps.Equal(p.Kube.NodeSelector, map[string]string{"pool": "a"}) {
		t.Errorf("p: node_selector %v", p.Kube.NodeSelector)
	}
}

// An admin may prepare [kubernetes] while the Docker backend runs: it is
// validated, and the [docker] keys stay as they are.
func TestKubeTablesWithDockerBackend(t *testing.T) {
	doc := "[server]\nbackend = \"docker\"\n[docker]\nnetwork_pool = \"10.213.0.0/16\"\n" +
		"[kubernetes]\nnamespace = \"next\"\n[projects.p]\nmembers = []\n[projects.p.kubernetes]\nstorage_class = \"x\"\n"
	c, err := Parse("f.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.Backend != BackendDocker || c.Docker.NetworkPool != "10.213.0.0/16" || c.Kubernetes.Namespace != "next" {
		t.Errorf("backend %q, network_pool %q, namespace %q", c.Server.Backend, c.Docker.NetworkPool, c.Kubernetes.Namespace)
	}
}

// A reload names each changed [kubernetes] key; those read once at start
// are marked as needing a restart, the rest apply to pods made afterwards.
func TestKubeDiff(t *testing.T) {
	a, err := Parse("a.toml", []byte("[kubernetes]\nnamespace = \"a\"\ntolerations = [{ key = \"x\", effect = \"NoExecute\", toleration_seconds = 5 }]\n[projects.p]\nmembers = []\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b.toml", []byte(`
[server]
backend = "kubernetes"
[kubernetes]
namespace = "b"
kubeconfig = "/etc/kubeconfig"
link = "pod-ip"
storage_size = "1Ti"
start_timeout = "10m"
node_selector = { pool = "gpu" }
tolerations = [{ key = "x", effect = "NoExecute", toleration_seconds = 6 }]
[projects.p]
members = []
kubernetes.gpu_resource = "amd.com/gpu"
`))
	if err != nil {
		t.Fatal(err)
	}
	cs := Diff(a, b)
	want := map[string]bool{ // key -> restart
		"server.backend":                true,
		"kubernetes.kubeconfig":         true,
		"kubernetes.namespace":          true,
		"kubernetes.link":               true,
		"kubernetes.storage_size":       false,
		"kubernetes.start_timeout":      false,
		"kubernetes.node_selector.pool": false,
		"kubernetes.tolerations":        false,
		"projects.p.kubernetes":         false,
	}
	if got := changeKeys(cs); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
		t.Fatalf("changes = %v, want %v", got, slices.Sorted(maps.Keys(want)))
	}
	for _, c := range cs {
		if c.Restart != want[c.Key] {
			t.Errorf("%s: restart = %v, want %v", c.Key, c.Restart, want[c.Key])
		}
	}
	if c := findChange(t, cs, "kubernetes.tolerations"); c.Running != "[x:NoExecute for=5s]" || c.File != "[x:NoExecute for=6s]" {
		t.Errorf("tolerations change = %+v, want them written as kubectl does", c)
	}

	// Within a project's overrides present on both sides, each key is named.
	c, err := Parse("c.toml", []byte("[projects.p]\nmembers = []\nkubernetes.gpu_resource = \"nvidia.com/gpu\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := changeKeys(Diff(b, c)); !slices.Contains(got, "projects.p.kubernetes.gpu_resource") {
		t.Errorf("changes = %v, want projects.p.kubernetes.gpu_resource", got)
	}
}

func TestTolerationString(t *testing.T) {
	s := int64(300)
	for tol, want := range map[*Toleration]string{
		{Operator: "Exists"}: "op=Exists",
		{Key: "node.kubernetes.io/not-ready", Operator: "Exists", Effect: "NoExecute", TolerationSeconds: &s}: "node.kubernetes.io/not-ready:NoExecute op=Exists for=300s",
		{Key: "dedicated", Value: "ml", Effect: "NoSchedule"}:                                                 "dedicated=ml:NoSchedule",
	} {
		if got := tol.String(); got != want {
			t.Errorf("%#v: %q, want %q", *tol, got, want)
		}
	}
}
