package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/workspace"
)

// httpGet fetches url, retrying while the forward comes up.
func httpGet(t *testing.T, url string, proxy ...string) string {
	t.Helper()
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if len(proxy) > 0 {
			// -D: curl through the SOCKS proxy, the name resolved at the far end.
			out, err := exec.Command("curl", "-sS", "--max-time", "5", "--socks5-hostname", proxy[0], url).CombinedOutput()
			if err == nil {
				return string(out)
			}
			last = string(out)
			continue
		}
		resp, err := http.Get(url)
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	t.Fatalf("GET %s: %s", url, last)
	return ""
}

// Alice's container cannot reach a service in bob's, by IP, though both
// are in one project; her own service is reachable to her through ssh -L
// and -D, which the agent dials inside her container.
func TestContainersCannotReachEachOther(t *testing.T) {
	sshtest.Require(t, "curl")
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	alice, bob := w.client(w.alice), w.client(w.bob)
	// A web server on all addresses in each container (as Jupyter with --ip=0.0.0.0).
	serve := `mkdir -p ~/www-$SYGALDRY_USER && echo from-$SYGALDRY_USER > ~/www-$SYGALDRY_USER/index.html && cd ~/www-$SYGALDRY_USER && { setsid nohup python3 -m http.server 8777 >/dev/null 2>&1 & } && sleep 1`
	sshtest.Must(t, bob.SSH(ctx, serve), nil)
	sshtest.Must(t, alice.SSH(ctx, serve), nil)

	ci, err := w.docker.ContainerInspect(ctx, workspace.ContainerName(w.project, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	var bobIP string
	for _, n := range ci.NetworkSettings.Networks {
		bobIP = n.IPAddress
	}
	if bobIP == "" {
		t.Fatalf("bob's container has no IP: %+v", ci.NetworkSettings.Networks)
	}
	probe := fmt.Sprintf(`python3 -c "import urllib.request,sys
try: print(urllib.request.urlopen('http://%s:8777/', timeout=4).read().decode().strip())
except Exception as e: print('unreachable')"`, bobIP)
	// Bob's server answers on that address (so a refusal below means isolation) ...
	if r := sshtest.Must(t, bob.SSH(ctx, probe), nil); r.Stdout != "from-bob\n" {
		t.Fatalf("bob's own server at %s: %q", bobIP, r.Stdout)
	}
	// ... but not to alice.
	if r := sshtest.Must(t, alice.SSH(ctx, probe), nil); r.Stdout != "unreachable\n" {
		t.Errorf("alice reached bob's server at %s: %q", bobIP, r.Stdout)
	}
	// Nor when the engine's own isolation fails open: ACCEPTs between
	// alice's bridge and bob's, both ways, as early in the forward path as
	// the engine lets us, right below the gateway's own rule in DOCKER-USER
	// (at the top when that rule is missing).
	bridge := func(user string) string {
		nw, err := w.docker.NetworkInspect(ctx, workspace.ContainerName(w.project, user), network.InspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return nw.Options["com.docker.network.bridge.name"]
	}
	ba, bb := bridge("alice"), bridge("bob")
	rules, err := exec.Command("iptables", "-w", "10", "-S", "DOCKER-USER").Output()
	if err != nil {
		t.Fatalf("iptables -S DOCKER-USER: %v", err)
	}
	at := 1
	for i, r := range strings.Split(strings.TrimSpace(string(rules)), "\n")[1:] { // [0] is -N
		if strings.Contains(r, "-i syg-+ -o syg-+ -j DROP") {
			at = i + 2
			break
		}
	}
	for _, open := range [][]string{{"-i", ba, "-o", bb, "-j", "ACCEPT"}, {"-i", bb, "-o", ba, "-j", "ACCEPT"}} {
		if out, err := exec.Command("iptables", append([]string{"-w", "10", "-I", "DOCKER-USER", strconv.Itoa(at)}, open...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("iptables", append([]string{"-w", "10", "-D", "DOCKER-USER"}, open...)...).Run() })
	}
	if r := sshtest.Must(t, alice.SSH(ctx, probe), nil); r.Stdout != "unreachable\n" {
		t.Errorf("with the engine's isolation open, alice reached bob's server at %s: %q", bobIP, r.Stdout)
	}

	// Her own server, through -L and -D.
	lport, dport := freePort(t), freePort(t)
	fwd := alice.SSH(ctx, "-N", "-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:localhost:8777", lport),
		"-D", "127.0.0.1:"+strconv.Itoa(dport), "--")
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Process.Kill(); fwd.Wait() })
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", lport)); body != "from-alice\n" {
		t.Errorf("GET through -L = %q", body)
	}
	if body := httpGet(t, "http://localhost:8777/", "127.0.0.1:"+strconv.Itoa(dport)); body != "from-alice\n" {
		t.Errorf("GET through -D = %q", body)
	}
}

// A fork bomb and a memory hog in alice's container stop at its limits;
// the gateway and bob's sessions keep working meanwhile and afterwards.
func TestForkBombAndMemoryHogContained(t *testing.T) {
	w := newWorld(t, withProjectTOML("pids_limit = 128\nmemory = \"256m\"\ncpus = 1"))
	ctx := ctxT(t, 4*time.Minute)
	alice, bob := w.client(w.alice), w.client(w.bob)
	bobOK := func(when string) {
		t.Helper()
		start := time.Now()
		r := sshtest.Run(t, bob.SSH(ctx, "echo ok"), nil)
		if r.Code != 0 || r.Stdout != "ok\n" {
			t.Errorf("bob %s: %v", when, r)
		}
		t.Logf("bob's login %s took %v", when, time.Since(start).Round(time.Millisecond))
	}
	sshtest.Must(t, alice.SSH(ctx, "true"), nil)
	bobOK("before")

	hc, err := w.docker.ContainerInspect(ctx, workspace.ContainerName(w.project, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	if p := hc.HostConfig.PidsLimit; p == nil || *p != 128 || hc.HostConfig.Memory != 256<<20 || hc.HostConfig.MemorySwap != 256<<20 || hc.HostConfig.NanoCPUs != 1e9 {
		t.Fatalf("alice's container: pids %v memory %d swap %d cpus %d", p, hc.HostConfig.Memory, hc.HostConfig.MemorySwap, hc.HostConfig.NanoCPUs)
	}

	// Allocate and touch up to 1 GiB against a 256 MiB limit: the kernel
	// kills the hog (SIGKILL: 137), inside alice's container only.
	hog := sshtest.Run(t, alice.SSH(ctx, `python3 -c "
b = []
for i in range(16):
    b.append(bytearray(64 << 20))
print('allocated 1 GiB', flush=True)
"`), nil)
	if hog.Code != 137 || strings.Contains(hog.Stdout, "allocated") {
		t.Errorf("memory hog: %v", hog)
	}
	bobOK("after alice's memory hog")
	sshtest.Must(t, alice.SSH(ctx, "echo ok"), nil) // the hog died, not her container

	// Fork until the kernel says no (bounded at 512 forks and 10 s in case
	// nothing stops it); the children hold their slots for 12 s.
	bomb := alice.SSH(ctx, `python3 -c "
import os, sys, time
n, t0 = 0, time.time()
while n < 512 and time.time() - t0 < 10:
    try:
        pid = os.fork()
    except OSError as e:
        print('stopped after', n, 'forks:', e.strerror, flush=True)
        break
    if pid == 0:
        time.sleep(12)
        os._exit(0)
    n += 1
else:
    print('not stopped after', n, 'forks', flush=True)
time.sleep(12)
"`)
	stdout, err := bomb.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := bomb.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 200)
	n, _ := stdout.Read(line)
	got := string(line[:n])
	if !strings.HasPrefix(got, "stopped after") {
		t.Errorf("fork bomb: %q", got)
	} else if f, _ := strconv.Atoi(strings.Fields(got)[2]); f >= 128 {
		t.Errorf("fork bomb made %d processes under a limit of 128", f)
	}
	bobOK("while alice's container is full")
	bomb.Process.Kill()
	io.Copy(io.Discard, stdout)
	bomb.Wait()
	bobOK("after alice's fork bomb")

	// Alice's container is usable again. (Her agent may have died when it
	// could not make a thread while the container was full; then her next
	// login starts the container again.)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		r := sshtest.Run(t, alice.SSH(ctx, "echo ok"), nil)
		if r.Stdout == "ok\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("alice after the fork bomb: %v", r)
			break
		}
	}
}
