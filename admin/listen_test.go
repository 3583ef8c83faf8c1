package admin_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sygaldry/sygaldry/admin"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

func TestListenCreatesPrivateSocket(t *testing.T) {
	dir := testenv.ShortTempDir(t)
	sock := filepath.Join(dir, "run", "sygaldry", "admin.sock")
	l, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(sock))
	if err != nil || di.Mode().Perm() != 0o755 {
		t.Fatalf("parent dir: %v %v, want 0755", di.Mode(), err)
	}
	if l.Addr().String() != sock {
		t.Errorf("Addr %q, want %q", l.Addr(), sock)
	}
	// Only the socket is left in the directory: no temporary bind dir.
	ents, _ := os.ReadDir(filepath.Dir(sock))
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the socket", len(ents))
	}
	// It answers at its final path.
	answers(t, l, sock)
}

func TestListenRefusesLiveSocket(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	l, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go acceptAll(l)
	_, err = admin.Listen(sock)
	if !errors.Is(err, admin.ErrSocketInUse) || !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), "another") {
		t.Fatalf("second Listen: %v, want a clear ErrSocketInUse", err)
	}
	// The live socket was left alone.
	if c, err := net.Dial("unix", sock); err != nil {
		t.Fatalf("first gateway's socket broken: %v", err)
	} else {
		c.Close()
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	// A gateway that died: the socket file stays, nobody answers.
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	l, err := admin.Listen(sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer l.Close()
	answers(t, l, sock)
}

func TestListenLeavesOtherFilesAlone(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	if err := os.WriteFile(sock, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Listen(sock); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(sock); string(b) != "precious" {
		t.Fatal("regular file was touched")
	}
}

func TestCloseRemovesOnlyItsOwnSocket(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	l, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}

	// A successor took the path (ours stopped answering); our late Close
	// must not delete its socket.
	old, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(sock)
	succ, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer succ.Close()
	old.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("successor's socket removed by the old listener's Close: %v", err)
	}
}

func TestListenPathTooLong(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t), strings.Repeat("x", 120))
	if _, err := admin.Listen(sock); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("Listen with a long path: %v", err)
	}
}

// answers checks that l accepts a connection dialled at sock.
func answers(t *testing.T, l net.Listener, sock string) {
	t.Helper()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
}

// acceptAll accepts and closes connections until l is closed.
func acceptAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}
