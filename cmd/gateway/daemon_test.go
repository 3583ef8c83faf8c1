package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/docker/docker/client"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// daemonEnv is what a test of the gateway daemon with the real engine
// needs: the test image and the agent, the gateway and sygctl binaries, a
// short directory for the state, storage and admin socket, a project of its
// own (whose containers the cleanup removes) and a free port.
type daemonEnv struct {
	image, agentBin, bin, sygctl string
	docker                       *client.Client
	dir, sock, cfgPath           string
	project                      string
	port                         int
}

func newDaemonEnv(t *testing.T, prefix string) *daemonEnv {
	t.Helper()
	sshtest.Require(t, "ssh")
	e := &daemonEnv{
		image:    testenv.Image(t),
		agentBin: testenv.AgentBinary(t),
		docker:   testenv.Docker(t),
		dir:      testenv.ShortTempDir(t),
		bin:      testenv.Binary(t, "./cmd/gateway", "sygaldry-gateway"),
		sygctl:   testenv.Binary(t, "./cmd/sygctl", "sygctl"),
		project:  testenv.UniqueName(prefix),
		port:     freePort(t),
	}
	e.sock = filepath.Join(e.dir, "admin.sock")
	e.cfgPath = filepath.Join(e.dir, "gateway.toml")
	t.Cleanup(func() { testenv.RemoveLabelledProject(t, e.docker, e.project) })
	return e
}

// config is a gateway config on the env: server lines go into [server],
// defaults into [defaults] (after the test image and gpus = "none"), and
// rest (the [projects.*] and [users.*] tables) follows.
func (e *daemonEnv) config(server, defaults, rest string) string {
	return fmt.Sprintf(`[server]
listen = "127.0.0.1:%d"
state_dir = %q
admin_socket = %q
agent_path = %q
%s
[docker]
storage_root = %q
[defaults]
image = %q
gpus = "none"
%s
%s`, e.port, filepath.Join(e.dir, "state"), e.sock, e.agentBin, server,
		filepath.Join(e.dir, "storage"), e.image, defaults, rest)
}

// write puts doc in the env's config file.
func (e *daemonEnv) write(t *testing.T, doc string) {
	t.Helper()
	if err := os.WriteFile(e.cfgPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}
