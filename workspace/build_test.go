package workspace

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

// TestEnsureBuildPassesBuildArgs: the project's build_args reach the build
// of its missing image; an ARG left out keeps its Dockerfile default.
func TestEnsureBuildPassesBuildArgs(t *testing.T) {
	r := newRig(t, nil)
	tag := "sygaldry-test/" + testenv.UniqueName("args") + ":latest"
	r.removeImageAtCleanup(tag)
	dir := testenv.ShortTempDir(t)
	df := filepath.Join(dir, "dev.dockerfile")
	writeFile(t, df, "FROM "+r.image+"\nARG BAZEL_VERSION=6.4.0\nARG RUST_VERSION=1.79.0\n"+
		"RUN echo \"bazel=${BAZEL_VERSION} rust=${RUST_VERSION}\" > /etc/build-args\n")

	p := r.project()
	p.Image, p.Dockerfile = tag, df
	p.BuildArgs = map[string]string{"BAZEL_VERSION": "7.4.1"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress testenv.SyncBuffer
	inst, err := r.m.Ensure(ctx, p, "alice", &progress)
	if err != nil {
		t.Fatalf("Ensure: %v\n%s", err, progress.String())
	}
	if out := run(t, inst, "cat /etc/build-args"); out != "bazel=7.4.1 rust=1.79.0\n" {
		t.Errorf("build args in the image: %q", out)
	}
}
