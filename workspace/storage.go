package workspace

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// hostDirs are the host directories a container needs before it starts.
type hostDirs struct {
	chown []string      // to be owned by the container user: created now, or root-owned and empty
	user  userStateDirs // the user's own directory and the mountpoints of user_state (storage_userstate.go)
}

// prepareHostDirs creates the missing project storage directories and the
// link directory (mode 0700) so the bind mounts have a source. Ownership is
// set later by ownHostDirs, once the container user's uid is known from the
// image.
func prepareHostDirs(spec Spec) (hostDirs, error) {
	var hd hostDirs
	if err := lockDownParents(spec); err != nil {
		return hd, fmt.Errorf("storage dirs: %w", err)
	}
	for _, dir := range spec.StorageDirs {
		fi, err := os.Stat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return hd, fmt.Errorf("create storage dir: %w", err)
			}
			hd.chown = append(hd.chown, dir)
			continue
		case err != nil:
			return hd, fmt.Errorf("storage dir: %w", err)
		case !fi.IsDir():
			return hd, fmt.Errorf("storage path %s is not a directory", dir)
		}
		// A pre-existing directory holds somebody's data and its ownership
		// is the admin's choice: leave it alone. The one exception is an
		// empty root-owned one: that is what `mkdir` as root, or an older
		// docker bind of a missing source, leaves behind, and the container
		// user could never write it. Being empty, no data changes hands.
		if uid, ok := ownerUID(fi); ok && uid == 0 && isEmptyDir(dir) {
			hd.chown = append(hd.chown, dir)
		}
	}

	user, err := prepareUserDirs(spec)
	if err != nil {
		return hd, fmt.Errorf("per-user state: %w", err)
	}
	hd.user = user

	// The link dir's parent (<state_dir>/run) is root's only: the container
	// sees just its own link dir, through the bind mount.
	if err := os.MkdirAll(filepath.Dir(spec.LinkDir), 0o700); err != nil {
		return hd, fmt.Errorf("create link dir: %w", err)
	}
	if err := os.Mkdir(spec.LinkDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return hd, fmt.Errorf("create link dir: %w", err)
	}
	fi, err := os.Lstat(spec.LinkDir)
	if err != nil {
		return hd, fmt.Errorf("link dir: %w", err)
	}
	if !fi.IsDir() {
		return hd, fmt.Errorf("link dir %s is not a directory", spec.LinkDir)
	}
	if err := os.Chmod(spec.LinkDir, 0o700); err != nil {
		return hd, fmt.Errorf("link dir: %w", err)
	}
	// Always: the uid may differ from the last container's (a new image).
	hd.chown = append(hd.chown, spec.LinkDir)
	return hd, nil
}

// own chowns the directories to the container user.
func (hd hostDirs) own(uid, gid int) error {
	for _, dir := range hd.chown {
		if err := os.Lchown(dir, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", dir, err)
		}
	}
	if err := hd.user.own(uid, gid); err != nil {
		return fmt.Errorf("per-user state: %w", err)
	}
	return nil
}

// removeStaleSocket removes the socket a previous run of the container left
// behind, so readiness is not tried against a dead listener. Only call it
// while the container is not running.
func removeStaleSocket(spec Spec) error {
	err := os.Remove(spec.SocketPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale agent socket: %w", err)
	}
	return nil
}

func isEmptyDir(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	return errors.Is(err, io.EOF)
}

// lookupUser resolves the container user's uid and gid from the container's
// own /etc/passwd (the image decides who kvothe is, not the host).
func lookupUser(ctx context.Context, api dockerAPI, id, user string) (uid, gid int, err error) {
	data, err := readContainerFile(ctx, api, id, "/etc/passwd")
	if err != nil {
		return 0, 0, err
	}
	return parsePasswd(data, user)
}

// readContainerFile reads a small file from a (possibly stopped) container,
// following one level of symlink.
func readContainerFile(ctx context.Context, api dockerAPI, id, p string) ([]byte, error) {
	for range 2 {
		rc, _, err := api.CopyFromContainer(ctx, id, p)
		if err != nil {
			return nil, fmt.Errorf("read %s from container: %w", p, err)
		}
		tr := tar.NewReader(rc)
		hdr, err := tr.Next()
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("read %s from container: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeSymlink {
			rc.Close()
			target := hdr.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(p), target)
			}
			p = target
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, 8<<20))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s from container: %w", p, err)
		}
		return data, nil
	}
	return nil, fmt.Errorf("read %s from container: too many symlinks", p)
}

func parsePasswd(data []byte, user string) (uid, gid int, err error) {
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 4 || f[0] != user {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("bad /etc/passwd entry for %s", user)
		}
		return uid, gid, nil
	}
	return 0, 0, fmt.Errorf("%w: no user %q in the image's /etc/passwd", ErrUserMissing, user)
}
