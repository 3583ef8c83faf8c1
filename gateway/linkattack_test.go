package gateway_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/link"
	"github.com/sygaldry/sygaldry/workspace"
)

// The link-directory attacks of the isolation issue, as a user would make
// them: from a shell in her own container, with the real engine and the
// OpenSSH client. carol's container (project "other", of which alice is not
// a member) is the victim. Every variant must land nowhere but in alice's
// own container, or be refused with one clear line; carol's agent must not
// run anything for alice.
func TestLinkTamperingReachesNoOtherContainer(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 5*time.Minute)
	alice := w.client(w.alice)
	carol := w.client(w.carol, "other")
	victim := workspace.ContainerName("other", "carol")

	// carol's container runs and its agent socket exists on the host.
	sshtest.Must(t, carol.SSH(ctx, "true"), nil)
	sshtest.Must(t, alice.SSH(ctx, "true"), nil)
	victimSocket := workspace.LinkDir(w.state, victim) + "/" + link.SocketName

	const sock = workspace.LinkTarget + "/" + link.SocketName
	const verifyLine = "could not be verified, so nothing was sent to it"
	cases := []struct {
		name   string
		tamper string // run in alice's container (as kvothe) before her next login
	}{
		{"relative symlink", "rm " + sock + " && ln -s ../" + victim + "/agent.sock " + sock},
		{"absolute host symlink", "rm " + sock + " && ln -s " + victimSocket + " " + sock},
		{"hard link", "ln " + sock + " " + workspace.LinkTarget + "/copy.sock"},
		{"socket of another process", "rm " + sock + " && (" + workspace.AgentTarget +
			" serve --listen " + sock + " >/dev/null 2>&1 &) && sleep 1 && test -S " + sock},
		{"regular file", "rm " + sock + " && echo x > " + sock},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.CommandContext(ctx, "docker", "exec", workspace.ContainerName(w.project, "alice"), "sh", "-c", tc.tamper).CombinedOutput()
			if err != nil {
				t.Fatalf("tamper: %v\n%s", err, out)
			}
			r := sshtest.Run(t, alice.SSH(ctx, "hostname; touch /tmp/reached-by-alice"), nil)
			if strings.Contains(r.Stdout, "other") {
				t.Fatalf("alice's login landed in carol's container: %v", r)
			}
			if r.Code == 0 || !strings.Contains(r.Stderr, verifyLine) {
				t.Errorf("tampered link: want a refusal saying %q, got %v", verifyLine, r)
			}
			if strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
				t.Errorf("the refusal should be one line, got %q", r.Stderr)
			}
			if out, err := exec.CommandContext(ctx, "docker", "exec", victim, "test", "-e", "/tmp/reached-by-alice").CombinedOutput(); err == nil {
				t.Fatalf("alice's command ran in carol's container (%s)", out)
			}
			// Put alice's own container right again, as she would: clear
			// the directory and restart the container.
			w.dockerExec("alice", "sh", "-c", "rm -f "+workspace.LinkTarget+"/*")
			if out, err := exec.CommandContext(ctx, "docker", "restart", "-t", "1", workspace.ContainerName(w.project, "alice")).CombinedOutput(); err != nil {
				t.Fatalf("restart: %v\n%s", err, out)
			}
			r = sshtest.Run(t, alice.SSH(ctx, "hostname"), nil)
			if r.Code != 0 || strings.TrimSpace(r.Stdout) != strings.ReplaceAll(w.project, "_", "-") {
				t.Fatalf("alice's own container after a restart: %v", r)
			}
		})
	}
	// carol is untouched and still served.
	r := sshtest.Must(t, carol.SSH(ctx, "hostname"), nil)
	if strings.TrimSpace(r.Stdout) != "other" {
		t.Errorf("carol's container: %v", r)
	}
}
