package gateway_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/workspace"
)

// IDE servers on hosts without internet (issue 9). GPU hosts often have no
// outbound internet, so VS Code's bootstrap cannot download its server
// there. Two paths work without it, both tested with a stand-in server
// archive (standInServer): the client downloads the server and pushes it
// over SSH (remote.SSH.localServerDownload), or the host keeps archives in
// [defaults] ide_cache, mounted read-only into every container.

// standInCommit names the stand-in server's "version", as a VS Code commit
// names the server's.
const standInCommit = "0f0e0d0c0b0a09080706050403020100deadbeef"

// standInServer is a tar.gz laid out as VS Code's
// vscode-server-linux-x64.tar.gz (one top directory, bin/ inside) whose
// bin/code-server serves a fixed answer on 127.0.0.1:PORT.
func standInServer(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct {
		name string
		mode int64
		body string
	}{
		{"vscode-server-linux-x64/", 0o755, ""},
		{"vscode-server-linux-x64/bin/", 0o755, ""},
		{"vscode-server-linux-x64/bin/code-server", 0o755, "#!/bin/sh\n# Stand-in for VS Code's server: a fixed answer on 127.0.0.1:$1.\nhere=$(cd \"$(dirname \"$0\")/..\" && pwd)\nexec python3 -m http.server --bind 127.0.0.1 --directory \"$here/www\" \"$1\"\n"},
		{"vscode-server-linux-x64/www/", 0o755, ""},
		{"vscode-server-linux-x64/www/index.html", 0o644, standInAnswer},
	} {
		h := &tar.Header{Name: f.name, Mode: f.mode & 0o777, Size: int64(len(f.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)}
		if strings.HasSuffix(f.name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const standInAnswer = "stand-in server " + standInCommit + "\n"

// offlineBootstrap is a stand-in for VS Code's install script on a host
// without internet: with the server not yet in ~/.vscode-server/bin/COMMIT
// it unpacks the archive the client pushed there (vscode-server.tar.gz,
// complete once vscode-server.tar.gz.done exists), else the one in
// $SYGALDRY_IDE_CACHE, else says a download is needed and stops. Then it
// starts the server on 127.0.0.1:port and prints where it listens.
func offlineBootstrap(port int) string {
	return fmt.Sprintf(`set -e
id=f00d
c=%[1]s
d="$HOME/.vscode-server/bin/$c"
mkdir -p "$d"
if [ ! -x "$d/bin/code-server" ]; then
  if [ -f "$d/vscode-server.tar.gz.done" ]; then
    a="$d/vscode-server.tar.gz"; from=pushed
  elif [ -n "$SYGALDRY_IDE_CACHE" ] && [ -f "$SYGALDRY_IDE_CACHE/vscode-server-linux-x64-$c.tar.gz" ]; then
    a="$SYGALDRY_IDE_CACHE/vscode-server-linux-x64-$c.tar.gz"; from=cache
  else
    echo "$id: start"; echo "downloadNeeded==true=="; echo "$id: end"
    exit 0
  fi
  tar -xzf "$a" -C "$d" --strip-components 1
  rm -f "$d/vscode-server.tar.gz" "$d/vscode-server.tar.gz.done"
  echo "unpacked==$from=="
fi
setsid nohup "$d/bin/code-server" %[2]d >"$d/.log" 2>&1 </dev/null &
for i in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/%[2]d) 2>/dev/null && break
  sleep 0.1
done
echo "$id: start"
echo "listeningOn==127.0.0.1:%[2]d=="
echo "$id: end"
`, standInCommit, port)
}

// reachStandIn forwards a free local port to 127.0.0.1:port in c's
// container (a second connection, -L) and checks the stand-in's answer.
func reachStandIn(t *testing.T, ctx context.Context, c sshtest.Client, port int) {
	t.Helper()
	local := freePort(t)
	startForward(t, ctx, c, "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", local, port))
	got, err := retry(ctx, func() (string, error) { return getDirect(ctx, local) })
	if err != nil || got != standInAnswer {
		t.Errorf("the server through -L: %q, %v; want %q", got, err, standInAnswer)
	}
}

// remote.SSH.localServerDownload: the bootstrap finds no server and cannot
// download one; the client pushes the archive and its .done marker with
// scp (the sftp protocol, as OpenSSH 9's scp and VS Code use it, to
// '~/.vscode-server/bin/COMMIT'); the next bootstrap unpacks and starts it,
// and the client reaches it through -L. Real OpenSSH throughout.
func TestOfflineServerPushedOverSSH(t *testing.T) {
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	c := w.client(w.alice)
	const port = 8791

	b := startBootstrap(t, ctx, c, offlineBootstrap(port))
	if b == nil {
		t.FailNow()
	}
	if b.value("downloadNeeded==") != "true" || b.value("listeningOn==") != "" {
		t.Fatalf("first bootstrap, nothing installed: want downloadNeeded==true==, got\n%s", b.output())
	}

	dir := testenv.ShortTempDir(t)
	archive := filepath.Join(dir, "vscode-server.tar.gz")
	done := filepath.Join(dir, "vscode-server.tar.gz.done")
	if err := os.WriteFile(archive, standInServer(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sshtest.Must(t, c.SCP(ctx, archive, done, c.Target("~/.vscode-server/bin/"+standInCommit)), nil)

	b = startBootstrap(t, ctx, c, offlineBootstrap(port))
	if b == nil {
		t.FailNow()
	}
	if b.value("unpacked==") != "pushed" || b.value("listeningOn==") != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("bootstrap after the push: want unpacked==pushed== and listeningOn==127.0.0.1:%d==, got\n%s", port, b.output())
	}
	reachStandIn(t, ctx, c, port)
}

// [defaults] ide_cache: a reload that sets it reaches the next container
// made (the old one is recreated once nobody is inside; a reload without
// it recreates nothing), which has the host directory read-only at
// /opt/ide-cache with SYGALDRY_IDE_CACHE naming it; every member's
// container has it; a bootstrap unpacks the server from it, with no push
// and no internet.
func TestIDECacheMountedReadOnly(t *testing.T) {
	cache := testenv.ShortTempDir(t)
	name := "vscode-server-linux-x64-" + standInCommit + ".tar.gz"
	if err := os.WriteFile(filepath.Join(cache, name), standInServer(t), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	ctx := ctxT(t, 3*time.Minute)
	c := w.client(w.alice)
	const probe = `echo "${SYGALDRY_IDE_CACHE-unset}"; ls /opt/ide-cache 2>&1 || true`

	r := sshtest.Must(t, c.SSH(ctx, probe), nil)
	if !strings.HasPrefix(r.Stdout, "unset\n") || strings.Contains(r.Stdout, name) {
		t.Fatalf("without ide_cache: %v", r)
	}
	first := w.containers(ctx, "alice")[0].ID

	// The same file again: nothing changed, nothing is recreated.
	w.reloadDoc(t, w.doc)
	sshtest.Must(t, c.SSH(ctx, "true"), nil)
	if id := w.containers(ctx, "alice")[0].ID; id != first {
		t.Fatalf("a reload without ide_cache recreated the container (%s, was %s)", id, first)
	}

	w.reloadDoc(t, strings.Replace(w.doc, "[defaults]\n", fmt.Sprintf("[defaults]\nide_cache = %q\n", cache), 1))
	// The first session's container is recreated once the gateway has
	// seen that session end.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r = sshtest.Must(t, c.SSH(ctx, probe), nil)
		if strings.HasPrefix(r.Stdout, "/opt/ide-cache\n") || time.Now().After(deadline) {
			break
		}
	}
	if r.Stdout != "/opt/ide-cache\n"+name+"\n" {
		t.Fatalf("with ide_cache: %v", r)
	}
	if id := w.containers(ctx, "alice")[0].ID; id == first {
		t.Errorf("the container was not recreated for ide_cache")
	}
	ci, err := w.docker.ContainerInspect(ctx, workspace.ContainerName(w.project, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, m := range ci.Mounts {
		if m.Destination == workspace.IDECacheTarget {
			found = true
			if m.Source != cache || m.RW {
				t.Errorf("the IDE cache mount: %+v, want %s read-only", m, cache)
			}
		}
	}
	if !found {
		t.Errorf("no mount at %s: %+v", workspace.IDECacheTarget, ci.Mounts)
	}
	r = sshtest.Run(t, c.SSH(ctx, "touch /opt/ide-cache/x && echo written; rm -f /opt/ide-cache/"+name+" && echo removed"), nil)
	if strings.Contains(r.Stdout, "written") || strings.Contains(r.Stdout, "removed") || !strings.Contains(r.Stderr, "Read-only file system") {
		t.Errorf("writing into the IDE cache: %v", r)
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 1 {
		t.Errorf("the host's cache changed: %v", ents)
	}
	if r := sshtest.Must(t, w.client(w.bob).SSH(ctx, probe), nil); r.Stdout != "/opt/ide-cache\n"+name+"\n" {
		t.Errorf("bob's container: %v", r)
	}

	const port = 8792
	b := startBootstrap(t, ctx, c, offlineBootstrap(port))
	if b == nil {
		t.FailNow()
	}
	if b.value("unpacked==") != "cache" || b.value("listeningOn==") != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("bootstrap with the IDE cache: want unpacked==cache== and listeningOn==127.0.0.1:%d==, got\n%s", port, b.output())
	}
	reachStandIn(t, ctx, c, port)
}
