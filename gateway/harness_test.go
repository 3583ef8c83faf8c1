package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"github.com/sygaldry/sygaldry/internal/bind"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/sessions"
	"github.com/sygaldry/sygaldry/workspace"
)

// world is a real gateway on 127.0.0.1 with a real container manager on the
// local engine, the Debian test image, and three users: alice and bob are
// members of the project, carol is known but not a member.
type world struct {
	t        testing.TB
	docker   *client.Client
	project  string
	testID   string
	storage  string
	state    string
	cfg      *config.Config
	doc      string // the config file's text, for reload tests
	mgr      *workspace.Manager
	gw       *gateway.Server
	live     *config.Live // the gateway's configuration in force
	registry *sessions.Registry
	history  *sessions.History // nil unless the world keeps one
	metrics  *prometheus.Registry
	port     string
	alice    sshtest.Key
	bob      sshtest.Key
	carol    sshtest.Key
	stranger sshtest.Key
}

// worldTOML is what options add to the test config.
type worldTOML struct {
	server  strings.Builder // lines in [server]
	project strings.Builder // lines in the test project's table
	tail    strings.Builder // tables at the end
	logs    io.Writer       // also gets the gateway's log; nil: none
	history bool            // keep a session history (world.history)
	manager func(*workspace.Options)
}

type worldOpt func(*worldTOML)

// withProjectTOML appends lines to the project's table.
func withProjectTOML(lines string) worldOpt {
	return func(w *worldTOML) { w.project.WriteString(lines + "\n") }
}

// withServerTOML appends lines to [server].
func withServerTOML(lines string) worldOpt {
	return func(w *worldTOML) { w.server.WriteString(lines + "\n") }
}

// withManager changes the container manager's options before it is made.
func withManager(f func(*workspace.Options)) worldOpt {
	return func(w *worldTOML) { w.manager = f }
}

// withTailTOML appends tables at the end of the config.
func withTailTOML(lines string) worldOpt {
	return func(w *worldTOML) { w.tail.WriteString(lines + "\n") }
}

func newWorld(t testing.TB, opts ...worldOpt) *world {
	t.Helper()
	sshtest.Require(t, "ssh", "scp", "sftp", "rsync")
	w := &world{t: t, docker: testenv.Docker(t)}
	image := testenv.Image(t)
	agentBin := testenv.AgentBinary(t)
	dir := testenv.ShortTempDir(t)
	w.storage = filepath.Join(dir, "storage")
	w.state = filepath.Join(dir, "state")
	w.project = testenv.UniqueName("p")
	w.testID = w.project
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	w.alice = sshtest.NewKey(t, keys, "alice")
	w.bob = sshtest.NewKey(t, keys, "bob")
	w.carol = sshtest.NewKey(t, keys, "carol")
	w.stranger = sshtest.NewKey(t, keys, "stranger")

	var extra worldTOML
	for _, o := range opts {
		o(&extra)
	}
	doc := fmt.Sprintf(`
[server]
listen = "127.0.0.1:0"
state_dir = %q
admin_socket = %q
agent_path = %q
idle_stop = "0"
login_grace_time = "10s"
%s

[docker]
storage_root = %q

[defaults]
image = %q
gpus = "none"
shm_size = "64m"

[projects.%s]
members = ["alice", "bob"]
%s
[projects.other]
members = ["carol"]

[users.alice]
keys = [%q]
[users.bob]
keys = [%q]
[users.carol]
keys = [%q]
%s
`, w.state, filepath.Join(dir, "admin.sock"), agentBin, extra.server.String(), w.storage, image, w.project, extra.project.String(),
		w.alice.Authorized, w.bob.Authorized, w.carol.Authorized, extra.tail.String())
	cfg, err := config.Parse("test.toml", []byte(doc))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, doc)
	}
	w.cfg, w.doc = cfg, doc

	logw := testenv.LogWriter(t)
	if _, bench := t.(*testing.B); bench {
		logw = io.Discard // benchmarks print every log line
	}
	if extra.logs != nil {
		logw = io.MultiWriter(logw, extra.logs)
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mopts := workspace.OptionsFromConfig(cfg)
	mopts.Labels = map[string]string{testenv.TestLabel: w.testID}
	mopts.Logger = log
	if extra.manager != nil {
		extra.manager(&mopts)
	}
	w.mgr, err = workspace.NewManager(mopts)
	if err != nil {
		t.Fatal(err)
	}
	w.registry = sessions.NewRegistry(nil)
	if extra.history {
		if w.history, err = sessions.OpenHistory(filepath.Join(dir, "history.jsonl"), log); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.history.Close() })
		w.registry = sessions.NewRegistry(w.history)
	}
	w.metrics = prometheus.NewRegistry()
	w.live = config.NewLive(cfg)
	w.gw = mustNew(t, gateway.Options{
		Config:     w.live,
		Containers: bind.Containers(w.mgr),
		Sessions:   w.registry,
		Logger:     log,
		Metrics:    gateway.NewMetrics(w.metrics, w.registry),
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, w.port, _ = net.SplitHostPort(l.Addr().String())
	served := make(chan error, 1)
	go func() { served <- w.gw.Serve(l) }()
	t.Cleanup(func() {
		w.gw.Close()
		if err := <-served; err != nil && err != gateway.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
		w.mgr.Close()
		testenv.RemoveLabelled(t, w.docker, w.testID)
	})
	return w
}

// containers lists this test's containers, of one user when user != "".
func (w *world) containers(ctx context.Context, user string) []container.Summary {
	f := filters.NewArgs(filters.Arg("label", testenv.TestLabel+"="+w.testID))
	if user != "" {
		f.Add("label", "sygaldry.user="+user)
	}
	cs, err := w.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		w.t.Fatal(err)
	}
	return cs
}

// ssh returns a client logging in to the test project (or login) as key.
func (w *world) client(key sshtest.Key, login ...string) sshtest.Client {
	c := sshtest.Client{Host: "127.0.0.1", Port: w.port, Login: w.project, Key: key}
	if len(login) > 0 {
		c.Login = login[0]
	}
	return c
}

// exec runs a command in user's container through `docker exec` (as the
// container user), to look at it from outside the gateway.
func (w *world) dockerExec(user string, args ...string) string {
	w.t.Helper()
	name := workspace.ContainerName(w.project, user)
	out, err := exec.Command("docker", append([]string{"exec", name}, args...)...).CombinedOutput()
	if err != nil {
		w.t.Fatalf("docker exec %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func stopOptions(seconds int) container.StopOptions {
	return container.StopOptions{Timeout: &seconds}
}

// liveSession is an ssh command that has started in the container and runs
// until something ends it.
type liveSession struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *testenv.SyncBuffer
	done   chan struct{}
}

// longCommand is what startLive runs; tests look for it in the registry.
const longCommand = "echo started; sleep 300"

// startLive runs longCommand as c and returns once it has started.
func startLive(t *testing.T, ctx context.Context, c sshtest.Client) *liveSession {
	t.Helper()
	s := &liveSession{t: t, cmd: c.SSH(ctx, longCommand), stderr: &testenv.SyncBuffer{}, done: make(chan struct{})}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(stdout)
	line, _ := rd.ReadString('\n')
	go func() {
		defer close(s.done)
		io.Copy(io.Discard, rd) // the rest, until the session ends
		s.cmd.Wait()
	}()
	t.Cleanup(func() { s.cmd.Process.Kill(); <-s.done })
	if line != "started\n" {
		t.Fatalf("session did not start: %q, stderr %q", line, s.stderr.String())
	}
	return s
}

// wait waits up to d for the session to end and returns its exit code.
func (s *liveSession) wait(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(d):
		s.cmd.Process.Kill()
		s.t.Fatalf("session did not end within %v", d)
	}
	return s.cmd.ProcessState.ExitCode()
}

// mustNew is gateway.New for a test.
func mustNew(t testing.TB, o gateway.Options) *gateway.Server {
	t.Helper()
	gw, err := gateway.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return gw
}
