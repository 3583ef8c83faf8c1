package workspace

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"

	"github.com/sygaldry/sygaldry/config"
)

// ensureImage returns the ID of the project's image, building it from the
// configured Dockerfile when it is missing. Builds are single-flight per
// image reference: two projects sharing an image build it once.
func (m *Manager) ensureImage(ctx context.Context, p config.Resolved, image string, progress io.Writer) (string, error) {
	id, err := m.imageID(ctx, image)
	if err == nil || !cerrdefs.IsNotFound(err) {
		return id, err
	}
	if p.Dockerfile == "" {
		return "", userErr(ErrImageMissing, nil, "image %s is missing and no dockerfile is configured for project %s", image, p.Name)
	}
	unlock, err := m.locks.Lock(ctx, "image\x00"+image)
	if err != nil {
		return "", err
	}
	defer unlock()
	// Somebody else may have built it while we waited.
	if id, err := m.imageID(ctx, image); err == nil || !cerrdefs.IsNotFound(err) {
		return id, err
	}
	if err := m.buildImage(ctx, p, image, progress); err != nil {
		return "", err
	}
	return m.imageID(ctx, image)
}

func (m *Manager) imageID(ctx context.Context, image string) (string, error) {
	ii, err := m.api.ImageInspect(ctx, image)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", err
		}
		return "", fmt.Errorf("inspect image %s: %w", image, err)
	}
	return ii.ID, nil
}

// dockerfilePath resolves a configured Dockerfile path: relative paths are
// taken from Options.DockerfileDir (empty: the working directory).
func (m *Manager) dockerfilePath(df string) (string, error) {
	if filepath.IsAbs(df) {
		return df, nil
	}
	base := m.opts.DockerfileDir
	if base == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		base = wd
	}
	return filepath.Join(base, df), nil
}

// buildMessage is one line of the engine's JSON build stream.
type buildMessage struct {
	Stream      string `json:"stream"`
	Status      string `json:"status"`
	Error       string `json:"error"`
	ErrorDetail struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// buildArgs is the project's build_args in the engine's form.
func buildArgs(m map[string]string) map[string]*string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[k] = &v
	}
	return out
}

// buildImage builds image from the project's Dockerfile with the classic
// builder (Version "1"): it resolves `FROM <local image>` from the engine's
// store, where BuildKit would try a registry, and there is none offline.
// The build's human-readable stream goes to progress.
func (m *Manager) buildImage(ctx context.Context, p config.Resolved, image string, progress io.Writer) error {
	df, err := m.dockerfilePath(p.Dockerfile)
	if err != nil {
		return fmt.Errorf("resolve dockerfile: %w", err)
	}
	if fi, err := os.Stat(df); err != nil || !fi.Mode().IsRegular() {
		if err == nil {
			err = errors.New("not a regular file")
		}
		return userErr(ErrImageMissing, err, "image %s is missing and its dockerfile %s cannot be read", image, df)
	}
	m.log.Info("building image", "image", image, "dockerfile", df, "project", p.Name)
	fmt.Fprintf(progress, "Image %s is missing; building it from %s (this can take a while) ...\n", image, df)

	dir := filepath.Dir(df)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := writeContextTar(pw, dir)
		pw.CloseWithError(err)
		done <- err
	}()
	resp, err := m.api.ImageBuild(ctx, pr, build.ImageBuildOptions{
		Tags:        []string{image},
		Dockerfile:  filepath.Base(df),
		Version:     build.BuilderV1,
		BuildArgs:   buildArgs(p.BuildArgs),
		Remove:      true,
		ForceRemove: true,
	})
	if err != nil {
		pr.CloseWithError(err) // unblocks the tar writer
		<-done
		return userErr(ErrBuildFailed, err, "image %s could not be built from %s", image, df)
	}
	defer resp.Body.Close()

	var buildErr string
	dec := json.NewDecoder(resp.Body)
	for {
		var msg buildMessage
		if err := dec.Decode(&msg); err != nil {
			if !errors.Is(err, io.EOF) && buildErr == "" {
				buildErr = "the build stream broke off: " + err.Error()
			}
			break
		}
		switch {
		case msg.Error != "" || msg.ErrorDetail.Message != "":
			buildErr = strings.TrimSpace(or(msg.ErrorDetail.Message, msg.Error))
		case msg.Stream != "":
			io.WriteString(progress, msg.Stream)
		case msg.Status != "":
			fmt.Fprintln(progress, msg.Status)
		}
	}
	pr.CloseWithError(io.ErrClosedPipe)
	if tarErr := <-done; tarErr != nil && buildErr == "" && !errors.Is(tarErr, io.ErrClosedPipe) {
		buildErr = "cannot read the build context: " + tarErr.Error()
	}
	if buildErr != "" {
		m.log.Warn("image build failed", "image", image, "dockerfile", df, "err", buildErr)
		return userErr(ErrBuildFailed, errors.New(buildErr), "image %s could not be built from %s:\n  %s", image, df, buildErr)
	}
	m.log.Info("built image", "image", image)
	return nil
}

// writeContextTar writes dir as a build context: regular files, directories
// and symlinks, owned by root, paths relative to dir.
func writeContextTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var linkTarget string
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if linkTarget, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.IsDir(), fi.Mode().IsRegular():
		default:
			return nil // sockets, fifos, devices: not build input
		}
		hdr, err := tar.FileInfoHeader(fi, linkTarget)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
