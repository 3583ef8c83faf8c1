package workspace

import (
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/mount"

	"github.com/sygaldry/sygaldry/config"
)

// [defaults] ide_cache: the host directory is mounted read-only at
// /opt/ide-cache and named by SYGALDRY_IDE_CACHE; a project without it
// keeps its spec hash, so an upgrade recreates no container.
func TestBuildSpecIDECache(t *testing.T) {
	without := mustSpec(t, baseInput())
	if without.Hash != baseHash {
		t.Errorf("hash without ide_cache = %s, want %s (an upgrade would recreate every container)", without.Hash, baseHash)
	}
	for _, m := range without.HostConfig.Mounts {
		if m.Target == IDECacheTarget {
			t.Errorf("mount %+v without ide_cache", m)
		}
	}
	if slices.ContainsFunc(without.Config.Env, func(e string) bool { return strings.HasPrefix(e, IDECacheEnv+"=") }) {
		t.Errorf("env %q has %s without ide_cache", without.Config.Env, IDECacheEnv)
	}

	in := baseInput()
	in.Project.IDECache = "/srv/ide"
	in.Project.Env[IDECacheEnv] = "/elsewhere" // ours wins
	s := mustSpec(t, in)
	want := mount.Mount{Type: mount.TypeBind, Source: "/srv/ide", Target: "/opt/ide-cache", ReadOnly: true}
	if !slices.Contains(s.HostConfig.Mounts, want) {
		t.Errorf("mounts %+v lack %+v", s.HostConfig.Mounts, want)
	}
	var got []string
	for _, e := range s.Config.Env {
		if strings.HasPrefix(e, IDECacheEnv+"=") {
			got = append(got, e)
		}
	}
	if !slices.Equal(got, []string{"SYGALDRY_IDE_CACHE=/opt/ide-cache"}) {
		t.Errorf("env has %q, want SYGALDRY_IDE_CACHE=/opt/ide-cache once", got)
	}
	if s.Hash == baseHash {
		t.Error("ide_cache did not change the hash: containers would keep running without the mount")
	}
	in.Project.IDECache = "/srv/other"
	if mustSpec(t, in).Hash == s.Hash {
		t.Error("another ide_cache gave the same hash")
	}

	// A project mount may not hide the cache; a bad path (settings built
	// without config's validation) is refused.
	in = baseInput()
	in.Project.IDECache = "/srv/ide"
	in.Project.Mounts = append(in.Project.Mounts, config.Mount{Source: "/x", Target: "/opt/ide-cache/"})
	if _, err := BuildSpec(in); err == nil || !strings.Contains(err.Error(), "is already mounted") {
		t.Errorf("a mount over the IDE cache: err = %v", err)
	}
	for _, bad := range []string{"srv/ide", "/srv/../ide", "/"} {
		in := baseInput()
		in.Project.IDECache = bad
		if _, err := BuildSpec(in); err == nil || !strings.Contains(err.Error(), "ide_cache") {
			t.Errorf("ide_cache %q: err = %v", bad, err)
		}
	}
}
