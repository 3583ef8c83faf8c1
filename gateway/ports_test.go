package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
)

// A terminal user finds the port of a server in their container without
// guessing: `sygaldry ports` lists it with its process and an ssh -L line,
// the banner of an interactive login shows the same, and the line works
// when pasted (the local port changed to a free one, as a user whose 8777
// is taken would).
func TestPortsListedAndPastedLineForwards(t *testing.T) {
	sshtest.Require(t, "ssh")
	w := newWorld(t)
	ctx := ctxT(t, 2*time.Minute)
	c := w.client(w.alice)
	if r := sshtest.Run(t, c.SSH(ctx, "cd /tmp; echo served >index.html; setsid nohup python3 -m http.server 8777 >/dev/null 2>&1 </dev/null &"), nil); r.Code != 0 {
		t.Fatalf("start the server: %v", r)
	}

	type listener struct {
		Port    int    `json:"port"`
		Process string `json:"process"`
		SSH     string `json:"ssh"`
	}
	var found listener
	for deadline := time.Now().Add(30 * time.Second); found.Port == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		r := sshtest.Run(t, c.SSH(ctx, "sygaldry ports --json"), nil)
		if r.Code != 0 {
			t.Fatalf("sygaldry ports --json: %v", r)
		}
		var ls []listener
		if err := json.Unmarshal([]byte(r.Stdout), &ls); err != nil {
			t.Fatalf("sygaldry ports --json: %v in %q", err, r.Stdout)
		}
		for _, l := range ls {
			if l.Port == 8777 {
				found = l
			}
		}
	}
	want := fmt.Sprintf("ssh -L 8777:localhost:8777 -p %s %s@127.0.0.1", w.port, w.project)
	if found.Process != "python3" || found.SSH != want {
		t.Fatalf("port 8777 listed as %+v, want process python3 and %q", found, want)
	}
	if r := sshtest.Run(t, c.SSH(ctx, "sygaldry ports"), nil); r.Code != 0 || !strings.Contains(r.Stdout, "8777 python3") || !strings.Contains(r.Stdout, want) {
		t.Errorf("sygaldry ports: %v", r)
	}

	// The banner of an interactive login; never on exec.
	r := sshtest.Run(t, c.SSH(ctx, "-tt"), []byte("exit\n"))
	if !strings.Contains(r.Stdout, "8777") || !strings.Contains(r.Stdout, "python3") || !strings.Contains(r.Stdout, want) {
		t.Errorf("interactive login does not show the port: %q", r.Stdout)
	}
	if r := sshtest.Run(t, c.SSH(ctx, "true"), nil); strings.Contains(r.Stdout+r.Stderr, "8777") {
		t.Errorf("an exec session shows the ports: %v", r)
	}
	if r := sshtest.Run(t, c.SSH(ctx, "-tt", "--", "true"), nil); strings.Contains(r.Stdout+r.Stderr, "8777") {
		t.Errorf("an exec session with a pty shows the ports: %v", r)
	}

	// Paste the line: ssh -L 8777:localhost:8777 -p PORT PROJECT@HOST.
	args := strings.Fields(found.SSH)
	if len(args) != 6 || args[0] != "ssh" || args[1] != "-L" {
		t.Fatalf("not a pasteable line: %q", found.SSH)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := l.Addr().(*net.TCPAddr).Port
	l.Close()
	args[2] = strings.Replace(args[2], "8777:", fmt.Sprintf("%d:", local), 1)
	fwd := exec.CommandContext(ctx, "ssh", append(append(c.Options(), "-N", "-o", "ExitOnForwardFailure=yes"), args[1:]...)...)
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Process.Kill(); fwd.Wait() })
	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if body = get(ctx, fmt.Sprintf("http://127.0.0.1:%d/index.html", local)); body != "" {
			break
		}
	}
	if body != "served\n" {
		t.Fatalf("through the pasted forward: %q", body)
	}
}

func get(ctx context.Context, url string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}
