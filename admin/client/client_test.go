package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

func TestMissingSocket(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := New(sock).Sessions(ctx)
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v (%T), want *UnreachableError", err, err)
	}
	want := "cannot reach the gateway at " + sock + ": is sygaldry-gateway running? (no socket there"
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("message %q, want it to start %q", err, want)
	}
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("does not wrap ENOENT: %v", err)
	}
}

func TestStaleSocket(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	err = New(sock).Kill(context.Background(), "1", "")
	if err == nil || !strings.Contains(err.Error(), "is sygaldry-gateway running? (connection refused") {
		t.Fatalf("stale socket: %v", err)
	}
}

func TestNotASocket(t *testing.T) {
	sock := filepath.Join(testenv.ShortTempDir(t), "admin.sock")
	os.WriteFile(sock, nil, 0o600)
	_, err := New(sock).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
}

func TestUnreachableMessages(t *testing.T) {
	dial := func(errno syscall.Errno) error {
		return fmt.Errorf("Get \"http://sygaldry-gateway/v1/sessions\": %w",
			&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", errno)})
	}
	for _, tc := range []struct {
		err  error
		want string
		perm bool
	}{
		{dial(syscall.EACCES), "cannot reach the gateway at /run/sygaldry/admin.sock: is sygaldry-gateway running? (permission denied: run as root)", true},
		{dial(syscall.ENOENT), "(no socket there", false},
		{dial(syscall.ECONNREFUSED), "(connection refused: the socket is stale)", false},
		{dial(syscall.EAGAIN), "is sygaldry-gateway running? (resource temporarily unavailable)", false},
	} {
		err := error(&UnreachableError{Socket: DefaultSocket, Err: tc.err})
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: message %q, want %q", tc.err, err, tc.want)
		}
		if errors.Is(err, ErrPermission) != tc.perm {
			t.Errorf("%v: errors.Is(ErrPermission) = %v", tc.err, !tc.perm)
		}
	}
}

func TestAPIErrorIs(t *testing.T) {
	nf := error(&APIError{StatusCode: 404, Message: "no live session 7"})
	if !errors.Is(nf, ErrNotFound) || errors.Is(nf, ErrPermission) || nf.Error() != "no live session 7" {
		t.Fatalf("404: %v", nf)
	}
	if !errors.Is(&APIError{StatusCode: 403}, ErrPermission) {
		t.Fatal("403 is not ErrPermission")
	}
}

func TestDefaultSocket(t *testing.T) {
	if New("").Socket() != DefaultSocket {
		t.Fatal("empty path does not mean the default")
	}
}
