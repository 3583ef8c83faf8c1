package kube_test

// End to end against a real Kubernetes (test/k8s/cluster.sh): the gateway
// binary in kubernetes mode, the OpenSSH client, pods of the test image.
// It runs when SYGALDRY_K8S_E2E=1 (make test-k8s sets it after starting
// the cluster) and then fails, never skips, when the cluster is not there.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/kube"
)

const e2eImage = "sygaldry/testbase:bookworm" // imported into the cluster by cluster.sh

// cluster is the test's namespace on the real cluster, and a gateway
// whose kubeconfig holds only the RBAC that etc/kubernetes/rbac.yaml grants.
type cluster struct {
	cs         *kubernetes.Clientset // admin, for the test's own checks
	admin      *rest.Config
	ns         string
	kubeconfig string // the gateway's: the service account's token
	class      string // the storage class of the test's volume
	hostDir    string // the volume's directory on the node (this machine)
}

func requireCluster(t *testing.T) *cluster {
	t.Helper()
	if os.Getenv("SYGALDRY_K8S_E2E") != "1" {
		t.Skip("SYGALDRY_K8S_E2E is not 1: the Kubernetes tests run with `make test-k8s`, which starts the cluster")
	}
	sshtest.Require(t, "ssh", "scp", "sftp", "rsync", "curl")
	path := os.Getenv("KUBECONFIG")
	if path == "" {
		t.Fatal("SYGALDRY_K8S_E2E=1 but KUBECONFIG is empty: start the cluster with test/k8s/cluster.sh up")
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", path, err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Nodes().Get(ctx, "localhost", metav1.GetOptions{}); err != nil {
		t.Fatalf("the test cluster does not answer (test/k8s/cluster.sh up): %v", err)
	}
	c := &cluster{cs: cs, ns: "syg-" + strings.ToLower(testenv.UniqueName("e2e")), hostDir: t.TempDir()}
	c.class = c.ns + "-local"
	if err := os.Chmod(c.hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.applyRBAC(t, ctx, rc)
	c.volume(t, ctx)
	return c
}

// applyRBAC applies etc/kubernetes/rbac.yaml in the test's namespace and
// writes a kubeconfig with a token of its service account: the gateway
// gets what the manifest grants and no more.
func (c *cluster) applyRBAC(t *testing.T, ctx context.Context, admin *rest.Config) {
	t.Helper()
	var sa string
	for _, obj := range kube.RBACManifest(t) {
		var err error
		suffix := "-" + c.ns // cluster-wide names are the test's own
		switch o := obj.(type) {
		case *corev1.Namespace:
			o.Name = c.ns
			o.Labels = map[string]string{"sygaldry.test": "e2e"}
			_, err = c.cs.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
			t.Cleanup(func() {
				c.cs.CoreV1().Namespaces().Delete(context.Background(), c.ns, metav1.DeleteOptions{})
			})
		case *corev1.ServiceAccount:
			o.Namespace, sa = c.ns, o.Name
			_, err = c.cs.CoreV1().ServiceAccounts(c.ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			o.Namespace = c.ns
			_, err = c.cs.RbacV1().Roles(c.ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			o.Namespace = c.ns
			for i := range o.Subjects {
				o.Subjects[i].Namespace = c.ns
			}
			_, err = c.cs.RbacV1().RoleBindings(c.ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			o.Name += suffix
			_, err = c.cs.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
			name := o.Name
			t.Cleanup(func() { c.cs.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		case *rbacv1.ClusterRoleBinding:
			o.Name += suffix
			o.RoleRef.Name += suffix
			for i := range o.Subjects {
				o.Subjects[i].Namespace = c.ns
			}
			_, err = c.cs.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
			name := o.Name
			t.Cleanup(func() {
				c.cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
			})
		default:
			t.Fatalf("rbac.yaml holds a %T the test does not know", obj)
		}
		if err != nil {
			t.Fatalf("apply rbac.yaml: %v", err)
		}
	}
	c.admin = admin
	c.kubeconfig = c.tokenKubeconfig(t, ctx, sa)
}

// tokenKubeconfig writes a kubeconfig holding a token of the namespace's
// service account sa.
func (c *cluster) tokenKubeconfig(t *testing.T, ctx context.Context, sa string) string {
	t.Helper()
	exp := int64(3600)
	tok, err := c.cs.CoreV1().ServiceAccounts(c.ns).CreateToken(ctx, sa, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", sa, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: c.admin.Host, CertificateAuthorityData: c.admin.CAData, CertificateAuthority: c.admin.CAFile}
	kc.AuthInfos["gateway"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "gateway", Namespace: c.ns}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), sa+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// volume makes a PersistentVolume of the test's own class on a directory
// of this machine (the node): what a storage admin provides, so the
// gateway's claim binds to it.
func (c *cluster) volume(t *testing.T, ctx context.Context) {
	t.Helper()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: c.class, Labels: map[string]string{"sygaldry.test": "e2e"}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			StorageClassName:              c.class,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: c.hostDir}},
		},
	}
	if _, err := c.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		// The namespace's deletion takes the pods and the claim; wait
		// for them, so the volume's directory is unmounted before removal.
		for ctx.Err() == nil {
			pods, err := c.cs.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{})
			if err != nil || len(pods.Items) == 0 {
				break
			}
			for _, p := range pods.Items {
				zero := int64(0)
				c.cs.CoreV1().Pods(c.ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			}
			time.Sleep(500 * time.Millisecond)
		}
		c.cs.CoreV1().PersistentVolumes().Delete(context.Background(), c.class, metav1.DeleteOptions{})
	})
}

// gateway is a sygaldry-gateway process in kubernetes mode.
type gateway struct {
	bin, cfg, dir, log string
	port               int
	cmd                *exec.Cmd
}

func (c *cluster) gateway(t *testing.T, linkMode, extra, users string) *gateway {
	t.Helper()
	g := &gateway{
		bin: testenv.Binary(t, "./cmd/gateway", "sygaldry-gateway"),
		dir: testenv.ShortTempDir(t),
	}
	g.port = freePort(t)
	g.cfg = filepath.Join(g.dir, "gateway.toml")
	g.log = filepath.Join(g.dir, "gateway.log")
	doc := fmt.Sprintf(`[server]
listen = "127.0.0.1:%d"
state_dir = %q
admin_socket = %q
agent_path = %q
backend = "kubernetes"
idle_stop = "1h"
keepalive_interval = "0"

[kubernetes]
kubeconfig = %q
namespace = %q
storage_class = %q
storage_size = "1Gi"
link = %q
pending_timeout = "20s"
start_timeout = "3m"

[defaults]
image = %q
gpus = "none"
cpus = 1
memory = "1g"

%s
%s`, g.port, filepath.Join(g.dir, "state"), filepath.Join(g.dir, "admin.sock"), testenv.AgentBinary(t),
		c.kubeconfig, c.ns, c.class, linkMode, e2eImage, extra, users)
	if err := os.WriteFile(g.cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	g.start(t)
	return g
}

func (g *gateway) start(t *testing.T) {
	t.Helper()
	lf, err := os.OpenFile(g.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(g.bin, "--config", g.cfg)
	g.cmd.Stdout, g.cmd.Stderr = lf, lf
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	cmd := g.cmd
	t.Cleanup(func() { stop(cmd) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(g.port))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not listen:\n%s", g.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stop(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func (g *gateway) restart(t *testing.T) {
	t.Helper()
	stop(g.cmd)
	g.start(t)
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func (g *gateway) logTail() string {
	b, _ := os.ReadFile(g.log)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

func (g *gateway) client(project string, k sshtest.Key) sshtest.Client {
	return sshtest.Client{Host: "127.0.0.1", Port: strconv.Itoa(g.port), Login: project, Key: k}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (c *cluster) pod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	p, err := c.cs.CoreV1().Pods(c.ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKubernetesEndToEnd is the user's day on the Kubernetes backend, in
// the order a user lives it; each step builds on the one before.
func TestKubernetesEndToEnd(t *testing.T) {
	c := requireCluster(t)
	keys := t.TempDir()
	alice := sshtest.NewKey(t, keys, "alice")
	bob := sshtest.NewKey(t, keys, "bob")
	users := fmt.Sprintf(`[users.alice]
keys = [%q]
[users.bob]
keys = [%q]
`, alice.Authorized, bob.Authorized)
	g := c.gateway(t, "port-forward", `[projects.zephyr]
members = ["alice", "bob"]
`, users)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	a := g.client("zephyr", alice)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\n--- gateway log:\n%s", append(args, g.logTail())...)
	}

	// A first login makes the pod; the command's exit code comes back.
	start := time.Now()
	r := sshtest.Run(t, a.SSH(ctx, "--", `echo "hi from $(hostname) as $(id -un) for $SYGALDRY_USER"; exit 3`), nil)
	if r.Code != 3 || !strings.Contains(r.Stdout, "hi from zephyr as kvothe for alice") {
		fail("first login: code %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("cold first login (pod create, agent streamed, command run): %s", time.Since(start).Round(time.Millisecond))
	pod := c.pod(t, "sygaldry-zephyr-alice")
	if pod == nil || pod.Labels[kube.LabelProject] != "zephyr" || pod.Labels[kube.LabelUser] != "alice" {
		fail("no labelled pod for alice: %+v", pod)
	}
	uid := pod.UID
	start = time.Now()
	if r := sshtest.Run(t, a.SSH(ctx, "--", "true"), nil); r.Code != 0 {
		fail("warm login: %+v", r)
	}
	t.Logf("warm login: %s", time.Since(start).Round(time.Millisecond))

	// The agent runs as the user, with no capabilities; the user's
	// home is theirs.
	r = sshtest.Run(t, a.SSH(ctx, "--", `grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; touch ~/written && echo home-ok`), nil)
	if !strings.Contains(r.Stdout, "CapEff:\t0000000000000000") || !strings.Contains(r.Stdout, "NoNewPrivs:\t1") || !strings.Contains(r.Stdout, "home-ok") {
		fail("session privileges: %+v", r)
	}

	// stdin round trip, 4 MiB.
	blob := make([]byte, 4<<20)
	rand.Read(blob)
	r = sshtest.Run(t, a.SSH(ctx, "--", "sha256sum"), blob)
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, sha(blob)) {
		fail("stdin round trip: %+v", r)
	}

	// A pty.
	r = sshtest.Run(t, a.SSH(ctx, "-tt", "--", "tty; echo $TERM"), nil)
	if r.Code != 0 || !strings.Contains(r.Stdout, "/dev/pts/") {
		fail("pty: %+v", r)
	}

	// scp, sftp and rsync, checked by sha256.
	local := filepath.Join(t.TempDir(), "blob")
	os.WriteFile(local, blob, 0o644)
	if r := sshtest.Run(t, a.SCP(ctx, local, a.Target("blob.scp")), nil); r.Code != 0 {
		fail("scp up: %+v", r)
	}
	back := local + ".back"
	if r := sshtest.Run(t, a.SCP(ctx, a.Target("blob.scp"), back), nil); r.Code != 0 {
		fail("scp down: %+v", r)
	}
	if b, _ := os.ReadFile(back); sha(b) != sha(blob) {
		fail("scp round trip changed the bytes")
	}
	if r := sshtest.Run(t, a.SFTP(ctx, "put "+local+" blob.sftp\nget blob.sftp "+back+".sftp\n"), nil); r.Code != 0 {
		fail("sftp: %+v", r)
	}
	if b, _ := os.ReadFile(back + ".sftp"); sha(b) != sha(blob) {
		fail("sftp round trip changed the bytes")
	}
	if r := sshtest.Run(t, a.Rsync(ctx, "-a", local, a.Target("blob.rsync")), nil); r.Code != 0 {
		fail("rsync up: %+v", r)
	}
	if r := sshtest.Run(t, a.SSH(ctx, "--", "sha256sum blob.rsync"), nil); !strings.HasPrefix(r.Stdout, sha(blob)) {
		fail("rsync: %+v", r)
	}

	// -L to a server in the pod.
	sshtest.Run(t, a.SSH(ctx, "--", "mkdir -p www && echo served-from-pod > www/index.html && cd www && { nohup python3 -m http.server 8777 </dev/null >/dev/null 2>&1 & } ; sleep 1"), nil)
	lport := freePort(t)
	fwd := a.SSH(ctx, "-N", "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:8777", lport), "--")
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Process.Kill(); fwd.Wait() })
	var body string
	for i := 0; i < 50; i++ {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", lport))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(body, "served-from-pod") {
		fail("-L forward: got %q", body)
	}
	fwd.Process.Kill()
	fwd.Wait()

	// ssh -D, as VS Code's Remote-SSH opens it: a SOCKS proxy whose
	// connections are dialled inside the pod.
	dport := freePort(t)
	socks := a.SSH(ctx, "-N", "-D", fmt.Sprintf("127.0.0.1:%d", dport), "--")
	if err := socks.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { socks.Process.Kill(); socks.Wait() })
	var out []byte
	var err error
	for i := 0; i < 50; i++ {
		out, err = exec.CommandContext(ctx, "curl", "-sf", "--max-time", "5", "--socks5-hostname", fmt.Sprintf("127.0.0.1:%d", dport), "http://127.0.0.1:8777/").Output()
		if err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(string(out), "served-from-pod") {
		fail("-D forward: %v %q", err, out)
	}
	socks.Process.Kill()
	socks.Wait()

	// ssh -A: the client's agent answers inside the pod.
	fa := a
	fa.AgentSock = sshtest.StartAgent(t, ctx, bob)
	if r := sshtest.Run(t, fa.SSH(ctx, "--", "ssh-add -l"), nil); r.Code != 0 || !strings.Contains(r.Stdout, "bob") {
		fail("agent forwarding: %+v", r)
	}

	// ssh -R: a server on the client's side, reached from inside the pod
	// (by another connection of the same user: the listener is the pod's).
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "served-from-client") }))
	t.Cleanup(srv.Close)
	rev := a.SSH(ctx, "-N", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:9777:"+srv.Listener.Addr().String(), "--")
	if err := rev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rev.Process.Kill(); rev.Wait() })
	r = sshtest.Run(t, a.SSH(ctx, "--", `for i in $(seq 50); do python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9777/').read().decode())" 2>/dev/null && exit 0; sleep 0.2; done; exit 1`), nil)
	if r.Code != 0 || !strings.Contains(r.Stdout, "served-from-client") {
		fail("-R forward: %+v", r)
	}
	rev.Process.Kill()
	rev.Wait()

	// Two users, two pods, one claim: bob sees what alice wrote.
	sshtest.Run(t, a.SSH(ctx, "--", "echo from-alice > ~/shared.txt"), nil)
	// Bob's first logins come three at once: one pod is made, all three
	// land in it.
	b := g.client("zephyr", bob)
	results := make(chan sshtest.Result, 3)
	for range 3 {
		go func() {
			results <- sshtest.Run(t, b.SSH(ctx, "--", "cat ~/shared.txt; echo $SYGALDRY_USER"), nil)
		}()
	}
	for range 3 {
		r := <-results
		if r.Code != 0 || !strings.Contains(r.Stdout, "from-alice") || !strings.Contains(r.Stdout, "bob") {
			fail("bob in the shared project: %+v", r)
		}
	}
	bobPod := c.pod(t, "sygaldry-zephyr-bob")
	if bobPod == nil {
		fail("no pod for bob")
	}
	if n := strings.Count(readFile(g.log), `msg="pod created" component=pods backend=kubernetes pod=sygaldry-zephyr-bob`); n != 1 {
		fail("bob's three concurrent first logins made %d pods, want 1", n)
	}

	// sygctl sees pods and their nodes.
	sygctl := testenv.Binary(t, "./cmd/sygctl", "sygctl")
	out, err = exec.Command(sygctl, "--socket", filepath.Join(g.dir, "admin.sock"), "containers", "--json").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"node": "localhost"`) && !strings.Contains(string(out), `"node":"localhost"`) {
		fail("sygctl containers --json: %v\n%s", err, out)
	}

	// sygctl doctor on the gateway's config: the API answers and the
	// gateway's identity holds every right it needs. With the namespace's
	// default service account instead, it names what is missing.
	doctor := func(cfgPath string) (string, int) {
		cmd := exec.Command(sygctl, "doctor", "--config", cfgPath)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := doctor(g.cfg); code != 0 || !strings.Contains(out, "ok    kubernetes permissions") || !strings.Contains(out, "ok    kubernetes API: Kubernetes v1.34") {
		fail("sygctl doctor on the gateway's config: exit %d\n%s", code, out)
	}
	cfgData, _ := os.ReadFile(g.cfg)
	weak := filepath.Join(t.TempDir(), "weak.toml")
	os.WriteFile(weak, bytes.Replace(cfgData, []byte(c.kubeconfig), []byte(c.tokenKubeconfig(t, ctx, "default")), 1), 0o644)
	if out, code := doctor(weak); code != 1 || !strings.Contains(out, "FAIL  kubernetes permissions: the gateway may not: get pods in "+c.ns) {
		fail("sygctl doctor with the default service account: exit %d\n%s", code, out)
	}

	// A restarted gateway adopts the running pod: same pod, same data.
	g.restart(t)
	r = sshtest.Run(t, a.SSH(ctx, "--", "cat ~/shared.txt"), nil)
	if r.Code != 0 || !strings.Contains(r.Stdout, "from-alice") {
		fail("after a gateway restart: %+v", r)
	}
	if p := c.pod(t, "sygaldry-zephyr-alice"); p == nil || p.UID != uid {
		fail("the gateway restart replaced alice's pod instead of adopting it")
	}

	// Idle stop deletes the pod; the claim and its data stay. Bob left
	// a job running: his pod is kept.
	if r := sshtest.Run(t, b.SSH(ctx, "--", "{ nohup sleep 600 </dev/null >/dev/null 2>&1 & } ; echo started"), nil); r.Code != 0 {
		fail("bob's job: %+v", r)
	}
	data, _ := os.ReadFile(g.cfg)
	os.WriteFile(g.cfg, bytes.Replace(data, []byte(`idle_stop = "1h"`), []byte(`idle_stop = "3s"`), 1), 0o644)
	g.cmd.Process.Signal(syscall.SIGHUP)
	sshtest.Run(t, a.SSH(ctx, "--", "pkill -f http.server; true"), nil)
	deadline := time.Now().Add(90 * time.Second)
	for c.pod(t, "sygaldry-zephyr-alice") != nil {
		if time.Now().After(deadline) {
			fail("the idle pod was not deleted")
		}
		time.Sleep(time.Second)
	}
	if c.pod(t, "sygaldry-zephyr-bob") == nil {
		fail("bob's pod was deleted while his job ran")
	}
	r = sshtest.Run(t, a.SSH(ctx, "--", "cat ~/shared.txt"), nil)
	if r.Code != 0 || !strings.Contains(r.Stdout, "from-alice") {
		fail("after idle stop, the data is gone: %+v", r)
	}
	if p := c.pod(t, "sygaldry-zephyr-alice"); p == nil || p.UID == uid {
		fail("no new pod after the idle stop")
	}
}

// TestKubernetesGPUsPlacedByTheScheduler: a node that advertises two GPUs
// takes two pods asking for one each; the third user gets one clear line
// naming the resource and the scheduler's reason, and nothing is left.
func TestKubernetesGPUsPlacedByTheScheduler(t *testing.T) {
	c := requireCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	patch := func(op string) {
		// Capacity and allocatable together: the kubelet derives the
		// one from the other only at its next status update.
		body := `[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"2"},` +
			`{"op":"add","path":"/status/allocatable/nvidia.com~1gpu","value":"2"}]`
		if op == "remove" {
			body = `[{"op":"remove","path":"/status/capacity/nvidia.com~1gpu"},{"op":"remove","path":"/status/allocatable/nvidia.com~1gpu"}]`
		}
		_, err := c.cs.CoreV1().Nodes().Patch(context.Background(), "localhost", types.JSONPatchType, []byte(body), metav1.PatchOptions{}, "status")
		if err != nil && op == "add" {
			t.Fatal(err)
		}
	}
	patch("add")
	t.Cleanup(func() { patch("remove") })
	// The scheduler counts allocatable, which the kubelet derives from
	// capacity at its next status update.
	for deadline := time.Now().Add(90 * time.Second); ; {
		n, err := c.cs.CoreV1().Nodes().Get(ctx, "localhost", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if q, ok := n.Status.Allocatable["nvidia.com/gpu"]; ok && q.Value() == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node's allocatable never showed the 2 GPUs patched into its capacity: %v", n.Status.Allocatable)
		}
		time.Sleep(time.Second)
	}

	keys := t.TempDir()
	var users strings.Builder
	k := map[string]sshtest.Key{}
	for _, u := range []string{"alice", "bob", "carol"} {
		k[u] = sshtest.NewKey(t, keys, u)
		fmt.Fprintf(&users, "[users.%s]\nkeys = [%q]\n", u, k[u].Authorized)
	}
	// The link at the pod's IP, as from a gateway inside the cluster: this
	// machine is the node, so the pods' bridge is reachable from here.
	g := c.gateway(t, "pod-ip", `[projects.train]
members = ["alice", "bob", "carol"]
gpus = 1
`, users.String())
	for _, u := range []string{"alice", "bob"} {
		r := sshtest.Run(t, g.client("train", k[u]).SSH(ctx, "--", "echo in; env | grep -c NVIDIA_VISIBLE_DEVICES=void"), nil)
		if !strings.Contains(r.Stdout, "in") || !strings.Contains(r.Stdout, "0") {
			t.Fatalf("%s with a GPU: %+v\n%s", u, r, g.logTail())
		}
	}
	start := time.Now()
	r := sshtest.Run(t, g.client("train", k["carol"]).SSH(ctx, "--", "echo in"), nil)
	took := time.Since(start)
	if r.Code == 0 || strings.Contains(r.Stdout, "in") {
		t.Fatalf("carol got a third GPU of two: %+v", r)
	}
	for _, want := range []string{"no node can take your train pod now", "1 nvidia.com/gpu", "Insufficient nvidia.com/gpu"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("carol's line lacks %q:\n%s\n--- gateway log:\n%s", want, r.Stderr, g.logTail())
		}
	}
	if took > 90*time.Second {
		t.Errorf("carol waited %s for her answer (pending_timeout is 20s)", took)
	}
	deadline := time.Now().Add(60 * time.Second)
	for c.pod(t, "sygaldry-train-carol") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("carol's unschedulable pod was left behind\n--- gateway log:\n%s", g.logTail())
		}
		time.Sleep(500 * time.Millisecond)
	}
	sygctl := testenv.Binary(t, "./cmd/sygctl", "sygctl")
	out, err := exec.Command(sygctl, "--socket", filepath.Join(g.dir, "admin.sock"), "gpus", "--json").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sygaldry-train-alice") || !strings.Contains(string(out), "sygaldry-train-bob") {
		t.Errorf("sygctl gpus --json does not name the pods holding the node's GPUs: %v\n%s", err, out)
	}
}
