package imagecheck

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// contextDir is the build context the gateway and sygctl use: the
// Dockerfile's own directory.
const (
	contextDir = ".."
	dockerfile = "../dev_container.dockerfile"
)

type parsedDockerfile struct {
	raw      []byte
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	warnings []string
}

func parseDockerfile(t *testing.T) *parsedDockerfile {
	t.Helper()
	raw, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse %s: %v", dockerfile, err)
	}
	p := &parsedDockerfile{raw: raw}
	for _, w := range res.Warnings {
		p.warnings = append(p.warnings, w.Short)
	}
	lint := linter.New(&linter.Config{
		Warn: func(rule, description, url, msg string, loc []parser.Range) {
			line := 0
			if len(loc) > 0 {
				line = loc[0].Start.Line
			}
			p.warnings = append(p.warnings, rule+" (line "+strconv.Itoa(line)+"): "+msg)
		},
	})
	p.stages, p.metaArgs, err = instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("instructions in %s: %v", dockerfile, err)
	}
	if len(p.stages) == 0 {
		t.Fatal("no FROM stage")
	}
	return p
}

func (p *parsedDockerfile) final() instructions.Stage { return p.stages[len(p.stages)-1] }

// commands returns the final stage's commands of type T.
func commandsOf[T instructions.Command](p *parsedDockerfile) []T {
	var out []T
	for _, c := range p.final().Commands {
		if tc, ok := c.(T); ok {
			out = append(out, tc)
		}
	}
	return out
}

// runText is every RUN's shell text, one entry per RUN.
func (p *parsedDockerfile) runText() []string {
	var out []string
	for _, r := range commandsOf[*instructions.RunCommand](p) {
		out = append(out, strings.Join(r.CmdLine, " "))
	}
	return out
}

// args maps every ARG (global and in the final stage) to its default.
func (p *parsedDockerfile) args() map[string]string {
	m := map[string]string{}
	add := func(a instructions.ArgCommand) {
		for _, kv := range a.Args {
			m[kv.Key] = kv.ValueString()
		}
	}
	for _, a := range p.metaArgs {
		add(a)
	}
	for _, a := range commandsOf[*instructions.ArgCommand](p) {
		add(*a)
	}
	return m
}

// env maps the final stage's ENV keys to their (unexpanded) values.
func (p *parsedDockerfile) env() map[string]string {
	m := map[string]string{}
	for _, e := range commandsOf[*instructions.EnvCommand](p) {
		for _, kv := range e.Env {
			m[kv.Key] = kv.Value
		}
	}
	return m
}

func TestDockerfileParsesCleanly(t *testing.T) {
	p := parseDockerfile(t)
	if len(p.warnings) > 0 {
		t.Errorf("parser/linter warnings:\n  %s", strings.Join(p.warnings, "\n  "))
	}
	if len(p.stages) != 1 {
		t.Errorf("%d stages, want one", len(p.stages))
	}
	// A `# syntax=` line makes BuildKit pull a frontend image from a registry,
	// and the classic builder ignores it; neither is wanted.
	if syntax, _, _, ok := parser.DetectSyntax(p.raw); ok {
		t.Errorf("syntax directive %q: the image must build with the built-in frontend", syntax)
	}
}

func TestDockerfileBaseImage(t *testing.T) {
	p := parseDockerfile(t)
	base := p.final().BaseName
	if !regexp.MustCompile(`^nvidia/cuda:12\.9\.1-cudnn-devel-ubuntu(22|24)\.04$`).MatchString(base) {
		t.Errorf("base image %q, want nvidia/cuda:12.9.1-cudnn-devel-ubuntu{22,24}.04 (CUDA 12.9.1 with cuDNN)", base)
	}
}

func TestDockerfileBuildArgs(t *testing.T) {
	p := parseDockerfile(t)
	args := p.args()
	for k, want := range map[string]string{
		"BAZEL_VERSION":  "6.4.0",
		"PYTHON_VERSION": "3.13",
		"RUST_VERSION":   "1.79.0",
	} {
		if got, ok := args[k]; !ok || got != want {
			t.Errorf("ARG %s default = %q (declared %v), want %q", k, got, ok, want)
		}
	}
	// Spack: a release tag, never a branch; its package repository: a commit.
	if v := args["SPACK_VERSION"]; !regexp.MustCompile(`^v\d+\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("SPACK_VERSION = %q, want a release tag like v1.1.1", v)
	}
	if c := args["SPACK_PACKAGES_COMMIT"]; !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(c) {
		t.Errorf("SPACK_PACKAGES_COMMIT = %q, want a full commit hash", c)
	}
	// The pinned versions are recorded in the image: ENV ZEPHYR_<ARG> and a
	// label io.sygaldry.zephyr.<tool>, whatever build args the build got.
	env := p.env()
	labels := map[string]string{}
	for _, l := range commandsOf[*instructions.LabelCommand](p) {
		for _, kv := range l.Labels {
			labels[kv.Key] = strings.Trim(kv.Value, `"`)
		}
	}
	for k, tool := range map[string]string{"BAZEL_VERSION": "bazel", "PYTHON_VERSION": "python", "RUST_VERSION": "rust"} {
		if got := env["ZEPHYR_"+k]; got != "${"+k+"}" {
			t.Errorf("ENV ZEPHYR_%s = %q, want ${%s}", k, got, k)
		}
		if got := labels["io.sygaldry.zephyr."+tool]; got != "${"+k+"}" {
			t.Errorf("LABEL io.sygaldry.zephyr.%s = %q, want ${%s}", tool, got, k)
		}
	}
	// The build args are used, not just declared.
	runs := strings.Join(p.runText(), "\n")
	for _, k := range []string{"BAZEL_VERSION", "PYTHON_VERSION", "RUST_VERSION", "SPACK_VERSION", "SPACK_PACKAGES_COMMIT"} {
		if !strings.Contains(runs, "${"+k+"}") {
			t.Errorf("no RUN uses ${%s}", k)
		}
	}
}

func TestDockerfilePinsSpack(t *testing.T) {
	p := parseDockerfile(t)
	var clones []string
	for _, r := range p.runText() {
		if strings.Contains(r, "spack.git") {
			clones = append(clones, r)
		}
	}
	if len(clones) == 0 {
		t.Fatal("no RUN clones Spack")
	}
	for _, r := range clones {
		if !strings.Contains(r, `--branch "${SPACK_VERSION}"`) {
			t.Errorf("Spack clone not pinned to ${SPACK_VERSION}: %s", r)
		}
		if !strings.Contains(r, `"${SPACK_PACKAGES_COMMIT}"`) || !strings.Contains(r, "checkout --quiet FETCH_HEAD") {
			t.Errorf("spack-packages not checked out at ${SPACK_PACKAGES_COMMIT}: %s", r)
		}
		// The builtin repository is a local path, so Spack never clones a
		// moving branch at run time.
		if !strings.Contains(r, "builtin: /opt/spack-packages/repos/spack_repo/builtin") {
			t.Errorf("builtin package repository not configured as the pinned local checkout")
		}
	}
	for _, r := range clones {
		for _, moving := range []string{"develop", "releases/", "--branch main", "--branch master"} {
			if strings.Contains(r, moving) {
				t.Errorf("the Spack RUN mentions a moving ref %q: %s", moving, r)
			}
		}
	}
}

func TestDockerfileUserAndPaths(t *testing.T) {
	p := parseDockerfile(t)
	users := commandsOf[*instructions.UserCommand](p)
	if len(users) == 0 || users[len(users)-1].User != "kvothe" {
		t.Errorf("final USER = %v, want kvothe", users)
	}
	runs := strings.Join(p.runText(), "\n")
	for _, want := range []string{
		"useradd --uid 1000 --gid 1000 --create-home --home-dir /home/kvothe --shell /bin/bash kvothe",
		"mkdir -p /workspace /opt/spack_store /opt/bazel_cache /config",
		"chown kvothe:kvothe /home/kvothe /workspace /opt/spack_store /opt/bazel_cache /config",
		"userdel", // Ubuntu 24.04's own uid-1000 user
	} {
		if !strings.Contains(runs, want) {
			t.Errorf("no RUN does %q", want)
		}
	}
	env := p.env()
	for k, want := range map[string]string{
		"HOME":             "/home/kvothe",
		"SPACK_ROOT":       "/opt/spack",
		"ZEPHYR_SPACK_ENV": "/opt/spack_store/envs/zephyr",
	} {
		if env[k] != want {
			t.Errorf("ENV %s = %q, want %q", k, env[k], want)
		}
	}
	if !strings.HasPrefix(env["PATH"], "/opt/spack/bin:") || !strings.HasSuffix(env["PATH"], ":${PATH}") {
		t.Errorf("ENV PATH = %q: want Spack first and the base image's PATH kept", env["PATH"])
	}
	wd := commandsOf[*instructions.WorkdirCommand](p)
	if len(wd) == 0 || wd[len(wd)-1].Path != "/workspace" {
		t.Errorf("WORKDIR = %v, want /workspace", wd)
	}
	// The store and the caches the image writes to are the mounted ones.
	for _, want := range []string{"root: /opt/spack_store", "--disk_cache=/opt/bazel_cache/", "--repository_cache=/opt/bazel_cache/"} {
		if !strings.Contains(runs, want) {
			t.Errorf("no RUN configures %q", want)
		}
	}
}

// What VS Code Remote-SSH and artifact transfer need inside the container.
func TestDockerfileInstallsRemoteTools(t *testing.T) {
	p := parseDockerfile(t)
	var installed []string
	for _, r := range p.runText() {
		for _, seg := range strings.Split(r, "&&") {
			if !strings.Contains(seg, "apt-get install") {
				continue
			}
			for _, f := range strings.Fields(seg) {
				if !strings.HasPrefix(f, "-") {
					installed = append(installed, strings.Trim(f, `"`))
				}
			}
		}
	}
	for _, pkg := range []string{"bash", "tar", "curl", "wget", "procps", "ca-certificates", "rsync", "openssh-client", "openssh-sftp-server", "git", "rustup", "python${PYTHON_VERSION}", "python${PYTHON_VERSION}-venv"} {
		if !slices.Contains(installed, pkg) {
			t.Errorf("apt-get install lacks %s", pkg)
		}
	}
}

func TestDockerfileCopiesExistingSources(t *testing.T) {
	p := parseDockerfile(t)
	copies := commandsOf[*instructions.CopyCommand](p)
	if len(copies) == 0 {
		t.Fatal("no COPY")
	}
	var dests []string
	for _, c := range copies {
		if c.From != "" {
			t.Errorf("COPY --from=%s: the image has one stage", c.From)
		}
		if c.Chmod != "" || c.Link {
			t.Errorf("COPY uses --chmod/--link, which the classic builder refuses: %v", c.SourcePaths)
		}
		for _, src := range c.SourcePaths {
			if filepath.IsAbs(src) || strings.Contains(src, "..") {
				t.Errorf("COPY source %q leaves the build context", src)
				continue
			}
			fi, err := os.Stat(filepath.Join(contextDir, src))
			if err != nil {
				t.Errorf("COPY source %q: %v (the build context is container/)", src, err)
				continue
			}
			if fi.IsDir() {
				entries, _ := os.ReadDir(filepath.Join(contextDir, src))
				if len(entries) == 0 {
					t.Errorf("COPY source %q is empty", src)
				}
			}
		}
		dests = append(dests, c.DestPath)
	}
	for _, want := range []string{"/opt/sygaldry/entrypoints/", "/opt/sygaldry/nvidia/", "/opt/sygaldry/validation/"} {
		if !slices.Contains(dests, want) {
			t.Errorf("nothing is copied to %s", want)
		}
	}
	// The commands the docs promise are on PATH, pointing at copied files.
	runs := strings.Join(p.runText(), "\n")
	// link -> {path in the image, its source in the build context}.
	for link, target := range map[string][2]string{
		"/usr/local/bin/spack-env-activate": {"entrypoints/spack-env-activate", "entrypoints/spack-env-activate"},
		"/usr/local/bin/spack-install":      {"entrypoints/spack-install.sh", "entrypoints/spack-install.sh"},
		"/usr/local/bin/diagnose-nvidia":    {"nvidia/diagnose_nvidia.sh", "diagnose_nvidia.sh"},
		"/usr/local/bin/nvidia-diagnostics": {"nvidia/diagnose_nvidia.sh", "diagnose_nvidia.sh"},
		"/usr/local/bin/validate-cuda":      {"validation/validate_cuda.sh", "validation/validate_cuda.sh"},
	} {
		if !strings.Contains(runs, "ln -s /opt/sygaldry/"+target[0]+" "+link) {
			t.Errorf("%s is not linked to /opt/sygaldry/%s", link, target[0])
		}
		if _, err := os.Stat(filepath.Join(contextDir, target[1])); err != nil {
			t.Errorf("%s: %v", target[1], err)
		}
	}
}

func TestDockerfileNoLatestNoEntrypoint(t *testing.T) {
	p := parseDockerfile(t)
	for _, st := range p.stages {
		ref := st.BaseName
		if !strings.Contains(ref, ":") || strings.HasSuffix(ref, ":latest") {
			t.Errorf("FROM %q: pin a tag, not latest", ref)
		}
	}
	if bytes.Contains(p.raw, []byte(":latest")) {
		t.Error("the Dockerfile mentions a :latest tag")
	}
	if eps := commandsOf[*instructions.EntrypointCommand](p); len(eps) > 0 {
		t.Errorf("ENTRYPOINT %v: the gateway sets its own entrypoint", eps[0].CmdLine)
	}
	cmds := commandsOf[*instructions.CmdCommand](p)
	if len(cmds) != 1 || cmds[0].PrependShell || !slices.Equal(cmds[0].CmdLine, []string{"/opt/sygaldry/entrypoints/default.sh"}) {
		t.Errorf("CMD = %+v, want exec form [/opt/sygaldry/entrypoints/default.sh]", cmds)
	}
}
