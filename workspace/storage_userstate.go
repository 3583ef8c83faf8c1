package workspace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/docker/docker/api/types/mount"

	"github.com/sygaldry/sygaldry/config"
)

// Per-user state on a shared project home (issue 9). Every member of a
// project has a container of their own on the one monorepo_home; the home
// paths in the project's user_state are the exceptions:
//
//	<storage_root>/<project>/users/            root's only, like the project dir
//	<storage_root>/<project>/users/<user>/     the container user's; mounted at /.sygaldry/user
//	    .bash_history                          HISTFILE
//	    home/<path>                            mounted over ~/<path>, for each user_state path
//
// The nested mounts land on mountpoints in the shared home. Docker would
// create a missing one as root, and for ".cache/JetBrains" that is a
// root-owned ~/.cache nobody can write, so the mountpoints are made before
// the start, owned by the container user. Nothing here follows a symlink out
// of the directory it works in: the home and the user's directory are
// writable from containers, so every step goes through an os.Root, and a
// symlink where a directory should be is refused with its path.

// usersDir is the directory under a project's storage that holds one
// directory per user.
const usersDir = config.UsersDir

// userHome is the directory under a user's directory whose paths mirror
// the home's.
const userHome = "home"

// UserStatePaths returns the project's user_state, checked again (callers
// may build settings without config's validation).
func UserStatePaths(s config.Settings) ([]string, error) {
	paths := s.UserStatePaths()
	for i, p := range paths {
		if msg := config.CheckUserStatePath(p); msg != "" {
			return nil, fmt.Errorf("user_state[%d] %q: %s", i, p, msg)
		}
		for _, q := range paths[:i] {
			if p == q || strings.HasPrefix(p, q+"/") || strings.HasPrefix(q, p+"/") {
				return nil, fmt.Errorf("user_state[%d] %q overlaps %q", i, p, q)
			}
		}
	}
	return paths, nil
}

// UserEnv is the environment a user's container gets from their identity
// and, with per-user state, the shell history's place. Names listed here
// win over the project's env.
func UserEnv(id config.Identity, history bool) []string {
	var env []string
	if id.Name != "" {
		env = append(env, "GIT_AUTHOR_NAME="+id.Name, "GIT_COMMITTER_NAME="+id.Name)
	}
	if id.Email != "" {
		env = append(env, "GIT_AUTHOR_EMAIL="+id.Email, "GIT_COMMITTER_EMAIL="+id.Email)
	}
	if history {
		env = append(env, "HISTFILE="+HistFile)
	}
	return env
}

// userStateMounts mounts the user's directory at UserDirTarget and each
// user_state path from it over the home.
func userStateMounts(userDir, home string, paths []string) []mount.Mount {
	out := []mount.Mount{{Type: mount.TypeBind, Source: userDir, Target: UserDirTarget}}
	for _, p := range paths {
		out = append(out, mount.Mount{
			Type:   mount.TypeBind,
			Source: filepath.Join(userDir, userHome, p),
			Target: path.Join(home, p),
		})
	}
	return out
}

// userStateDirs is what prepareUserDirs found to finish once the container
// user's uid is known.
type userStateDirs struct {
	userDir string   // <project>/users/<user>; "" when user_state is []
	home    string   // the shared home (monorepo_home) on the host
	paths   []string // user_state
}

// prepareUserDirs creates the user's directory and the mount sources in it,
// so the container can be created. Their owner, and the mountpoints in the
// shared home, are done by own, at the start.
func prepareUserDirs(spec Spec) (userStateDirs, error) {
	if spec.UserDir == "" {
		return userStateDirs{}, nil
	}
	u := userStateDirs{userDir: spec.UserDir, paths: spec.UserState}
	for i, d := range StorageDirs {
		if d.Target == "" && i < len(spec.StorageDirs) {
			u.home = spec.StorageDirs[i] // monorepo_home, mounted at the home
		}
	}
	// users/ is like the project directory above it: root's only.
	if err := privateDir(filepath.Dir(spec.UserDir)); err != nil {
		return u, err
	}
	if err := os.Mkdir(spec.UserDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return u, fmt.Errorf("create user dir: %w", err)
	}
	if fi, err := os.Lstat(spec.UserDir); err != nil {
		return u, fmt.Errorf("user dir: %w", err)
	} else if !fi.IsDir() {
		return u, fmt.Errorf("user dir %s is not a directory", spec.UserDir)
	}
	root, err := os.OpenRoot(spec.UserDir)
	if err != nil {
		return u, fmt.Errorf("user dir: %w", err)
	}
	defer root.Close()
	for _, p := range spec.UserState {
		if err := mkdirsIn(root, path.Join(userHome, p), nil); err != nil {
			return u, fmt.Errorf("user dir %s: %w", spec.UserDir, err)
		}
	}
	return u, nil
}

// own hands the user's directory and what we made in it to the container
// user, and makes the mountpoints in the shared home.
//
// In the user's directory a root-owned directory on a user_state path can
// only be ours (made by prepareUserDirs, possibly at the create, before the
// uid was known): it is chowned. In the shared home, missing mountpoints are
// created and chowned at once. An existing root-owned directory on a
// mountpoint's path is handed over only when it holds nothing but other
// mountpoints' path components: that is what the engine leaves when it made
// the mountpoints itself (it does, as root, whenever it mounts the stopped
// container's filesystem, e.g. for the copy that reads /etc/passwd), and no
// data changes hands. Any other existing directory keeps its owner.
func (u userStateDirs) own(uid, gid int) error {
	if u.userDir == "" {
		return nil
	}
	if err := chownIfRoot(u.userDir, uid, gid, os.Lstat, os.Lchown); err != nil {
		return err
	}
	root, err := os.OpenRoot(u.userDir)
	if err != nil {
		return fmt.Errorf("user dir: %w", err)
	}
	defer root.Close()
	for _, p := range u.paths {
		for _, dir := range prefixes(path.Join(userHome, p)) {
			if err := chownIfRoot(dir, uid, gid, root.Lstat, root.Lchown); err != nil {
				return fmt.Errorf("user dir %s: %w", u.userDir, err)
			}
		}
	}
	if u.home == "" {
		return nil
	}
	home, err := os.OpenRoot(u.home)
	if err != nil {
		return fmt.Errorf("home: %w", err)
	}
	defer home.Close()
	chain := map[string]bool{} // every mountpoint and the directories above it
	for _, p := range u.paths {
		for _, dir := range prefixes(p) {
			chain[dir] = true
		}
	}
	for _, p := range u.paths {
		created := func(dir string) error { return home.Lchown(dir, uid, gid) }
		if err := mkdirsIn(home, p, created); err != nil {
			return fmt.Errorf("mountpoint for user_state %q in the project home %s: %w", p, u.home, err)
		}
		for _, dir := range prefixes(p) {
			fi, err := home.Lstat(dir)
			if err == nil && isRootOwned(fi) && onlyChain(home, dir, chain) {
				err = home.Lchown(dir, uid, gid)
			}
			if err != nil {
				return fmt.Errorf("mountpoint for user_state %q in the project home %s: %w", p, u.home, err)
			}
		}
	}
	return nil
}

// onlyChain reports whether directory dir (inside root) holds nothing but
// entries in chain: no data of anybody's.
func onlyChain(root *os.Root, dir string, chain map[string]bool) bool {
	f, err := root.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return false
	}
	for _, n := range names {
		if !chain[path.Join(dir, n)] {
			return false
		}
	}
	return true
}

// mkdirsIn makes each missing directory of rel inside root (mode 0755),
// calling created for each one it made. An existing component must be a
// directory: a symlink is refused, not followed, so what a container wrote
// in the home can never make the gateway create or chown elsewhere.
func mkdirsIn(root *os.Root, rel string, created func(dir string) error) error {
	for _, dir := range prefixes(rel) {
		err := root.Mkdir(dir, 0o755)
		if err == nil {
			if created != nil {
				if err := created(dir); err != nil {
					return err
				}
			}
			continue
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		fi, err := root.Lstat(dir)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symlink; per-user state is mounted on real directories only (move it away, or take the path out of user_state)", dir)
		case !fi.IsDir():
			return fmt.Errorf("%s is not a directory", dir)
		}
	}
	return nil
}

// chownIfRoot chowns name when it is a root-owned directory.
func chownIfRoot(name string, uid, gid int, lstat func(string) (fs.FileInfo, error), lchown func(string, int, int) error) error {
	fi, err := lstat(name)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", name)
	}
	if isRootOwned(fi) {
		return lchown(name, uid, gid)
	}
	return nil
}

func isRootOwned(fi fs.FileInfo) bool {
	uid, ok := ownerUID(fi)
	return ok && uid == 0
}

// prefixes returns "a", "a/b", "a/b/c" for "a/b/c".
func prefixes(rel string) []string {
	var out []string
	for i := range len(rel) {
		if rel[i] == '/' {
			out = append(out, rel[:i])
		}
	}
	return append(out, rel)
}
