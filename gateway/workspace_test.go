package gateway_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
)

// A project with a workspace (here a path inside its storage, as the
// monorepo's checkout under monorepo_home) has it at /workspace: commands and
// shells start there and see the host's files. A project without one starts
// in $HOME, as before.
func TestWorkspaceProject(t *testing.T) {
	w := newWorld(t, withProjectTOML(`workspace = "monorepo_home/zephyr"`))
	host := filepath.Join(w.storage, w.project, "monorepo_home", "zephyr")
	if err := os.MkdirAll(host, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "WORKSPACE"), []byte("made on the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 2*time.Minute)

	r := sshtest.Run(t, w.client(w.alice).SSH(ctx, `pwd; cat WORKSPACE; echo "$SYGALDRY_WORKSPACE"`), nil)
	if r.Code != 0 || r.Stdout != "/workspace\nmade on the host\n/workspace\n" {
		t.Errorf("exec in a project with a workspace: %v", r)
	}
	r = sshtest.Run(t, w.client(w.alice).SSH(ctx, "-T", "--"), []byte("pwd\n"))
	if r.Code != 0 || r.Stdout != "/workspace\n" {
		t.Errorf("shell in a project with a workspace: %v", r)
	}

	r = sshtest.Run(t, w.client(w.carol, "other").SSH(ctx, `pwd; echo "${SYGALDRY_WORKSPACE-unset}"`), nil)
	if r.Code != 0 || r.Stdout != "/home/kvothe\nunset\n" {
		t.Errorf("exec in a project without a workspace: %v", r)
	}
}
