package workspace

import (
	"fmt"
	"os"
	"path/filepath"
)

// privateDirMode is the mode of the directories above the per-project mounts
// (<storage_root>, <storage_root>/<project>) and of the state dirs above the
// link dirs (<state_dir>, <state_dir>/run): root's only. The mounts below
// belong to the container user, whose uid on the host may be anybody's
// (1000 is usually the first person with an account); without this, that
// account could read every project's home and caches.
const privateDirMode = 0o700

// lockDownParents makes the directories above spec's bind-mount sources
// root's only, creating the missing ones so, tightening the mode of the
// existing ones (their owner stays the admin's choice).
func lockDownParents(spec Spec) error {
	var dirs []string
	if len(spec.StorageDirs) > 0 {
		proj := filepath.Dir(spec.StorageDirs[0])
		dirs = append(dirs, filepath.Dir(proj), proj)
	}
	run := filepath.Dir(spec.LinkDir)
	dirs = append(dirs, filepath.Dir(run), run)
	for _, d := range dirs {
		if err := privateDir(d); err != nil {
			return err
		}
	}
	return nil
}

// privateDir creates dir (and its missing parents) or tightens its mode to
// privateDirMode.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, privateDirMode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	// Stat, not Lstat: these directories are the admin's (a storage root
	// may well be a symlink to a big disk); no container can write them.
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if fi.Mode().Perm()&^privateDirMode != 0 {
		if err := os.Chmod(dir, privateDirMode); err != nil {
			return fmt.Errorf("make %s private: %w", dir, err)
		}
	}
	return nil
}
