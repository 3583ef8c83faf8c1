package workspace

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/link"
)

// Each container's agent proves itself with a key the manager made for that
// container alone; a recreated container has a new key and a new pid
// namespace, so what proved the old one proves nothing about the new.
func TestAgentKeyIsPinnedPerContainer(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	inst, _ := r.ensure(p, "alice")
	ci := r.inspect(inst.ID)

	// The label holds the public half; the file in the root-only key dir
	// the private half, owned by the container user and read-only.
	label := ci.Config.Labels[LabelAgentKey]
	pk, err := parseAgentKeyLabel(label)
	if err != nil || pk == nil {
		t.Fatalf("agent key label %q: %v", label, err)
	}
	if inst.Peer.HostKey == nil || gossh.FingerprintSHA256(inst.Peer.HostKey) != gossh.FingerprintSHA256(pk) {
		t.Fatalf("instance peer key %v, label %q", inst.Peer.HostKey, label)
	}
	keyFile := AgentKeyPath(r.opts.StateDir, inst.Name)
	if !agentKeyMatches(keyFile, label) {
		t.Fatalf("key file %s is not the label's key", keyFile)
	}
	if fi, err := os.Stat(filepath.Dir(keyFile)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("key dir mode: %v %v", fi.Mode(), err)
	}
	if got := run(t, inst, "stat -c '%U %a' "+AgentKeyTarget+"; ls -A /.sygaldry"); got != "kvothe 400\nagent_key\nbin\nrun\nuser\n" {
		t.Errorf("inside the container: %q", got)
	}
	// Read-only: the user cannot replace the key the gateway pinned.
	if got := run(t, inst, "cat /dev/null > "+AgentKeyTarget+" 2>&1 || echo refused"); !strings.Contains(got, "refused") {
		t.Errorf("the agent key is writable inside the container: %q", got)
	}
	if ns, err := link.PidNSOf(ci.State.Pid); err != nil || ns != inst.Peer.PidNS {
		t.Errorf("peer pid namespace %v, container's %v (%v)", inst.Peer.PidNS, ns, err)
	}

	// Recreate: remove the container behind the manager's back.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.cl.ContainerRemove(ctx, inst.ID, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	inst2, _ := r.ensure(p, "alice")
	if inst2.ID == inst.ID || gossh.FingerprintSHA256(inst2.Peer.HostKey) == gossh.FingerprintSHA256(inst.Peer.HostKey) {
		t.Fatalf("recreated container kept its key: %v", inst2.Peer.HostKey)
	}
	for name, stale := range map[string]link.Peer{
		"old key and namespace": inst.Peer,
		"old key":               {Container: inst2.Name, PidNS: inst2.Peer.PidNS, HostKey: inst.Peer.HostKey},
		"old container":         {Container: inst2.Name, PidNS: inst2.Peer.PidNS, ContainerID: inst.ID, HostKey: inst2.Peer.HostKey},
	} {
		c, err := link.Dial(ctx, inst2.SocketPath, stale)
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, link.ErrUntrusted) {
			t.Errorf("%s: dial = %v, want ErrUntrusted", name, err)
		}
	}
	if got := run(t, inst2, "echo ok"); got != "ok\n" {
		t.Errorf("the new container: %q", got)
	}
}

// A stopped container whose key file is gone (a wiped state dir) is made
// anew, not started without a key to prove it.
func TestStoppedContainerWithoutKeyIsRecreated(t *testing.T) {
	r := newRig(t, nil)
	p := r.project()
	inst, _ := r.ensure(p, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	timeout := 1
	if err := r.cl.ContainerStop(ctx, inst.ID, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(AgentKeyPath(r.opts.StateDir, inst.Name)); err != nil {
		t.Fatal(err)
	}
	inst2, _ := r.ensure(p, "alice")
	if inst2.ID == inst.ID {
		t.Fatalf("the container without its key was started again")
	}
	if got := run(t, inst2, "echo ok"); got != "ok\n" {
		t.Errorf("the new container: %q", got)
	}
}
