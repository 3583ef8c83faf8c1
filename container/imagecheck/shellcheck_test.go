package imagecheck

import (
	"bufio"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the directory holding go.mod, above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// shellShebang matches the interpreters shellcheck understands.
var shellShebang = regexp.MustCompile(`^#!\s*(/usr/bin/env\s+)?(/usr)?(/bin/)?(bash|sh|dash|ksh)\b`)

// shellScripts lists every *.sh in the repository, and every extension-less
// file whose first line is a shell shebang (container/entrypoints/
// spack-env-activate, .ci/run, ...). Build outputs and VCS data are skipped.
func shellScripts(t *testing.T, root string) []string {
	t.Helper()
	skipAnywhere := map[string]bool{".git": true, "node_modules": true}
	skipAtRoot := map[string]bool{"bin": true, "run": true} // make build / make run outputs
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (skipAnywhere[d.Name()] || skipAtRoot[d.Name()] && filepath.Dir(path) == root) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if strings.HasSuffix(d.Name(), ".sh") {
			files = append(files, rel)
			return nil
		}
		if filepath.Ext(d.Name()) != "" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		line, _ := bufio.NewReader(f).ReadString('\n')
		if shellShebang.MatchString(line) {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestShellcheck runs shellcheck, at its default (strictest) severity, on
// every shell script in the repository. Outside CI a machine without
// shellcheck skips; in CI (CI=true) that is a failure.
func TestShellcheck(t *testing.T) {
	bin, err := exec.LookPath("shellcheck")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("shellcheck is not installed; CI must install it (apt-get install shellcheck)")
		}
		t.Skip("shellcheck not installed (CI requires it)")
	}
	root := repoRoot(t)
	files := shellScripts(t, root)

	// Guard the discovery itself: the image's scripts must be among them.
	for _, want := range []string{
		"container/launch_container.sh",
		"container/entrypoints/default.sh",
		"container/entrypoints/spack-install.sh",
		"container/entrypoints/spack-env-activate",
		"container/diagnose_nvidia.sh",
		"container/inspect_nvidia_setup.sh",
		"container/validation/validate_cuda.sh",
		"pkg/zephyr/build.sh",
	} {
		found := false
		for _, f := range files {
			if filepath.ToSlash(f) == want {
				found = true
			}
		}
		if !found {
			t.Errorf("%s not found among the shell scripts %v", want, files)
		}
	}

	cmd := exec.Command(bin, append([]string{"--format=gcc"}, files...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("shellcheck found problems in %d scripts:\n%s", len(files), out)
	}
	t.Logf("shellcheck checked %d scripts", len(files))
}
