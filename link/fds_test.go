package link

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/sygaldry/sygaldry/internal/fdpass"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// fdsPair is a gateway-side FDs and the agent's end of its socket.
func fdsPair(t *testing.T) (*FDs, *net.UnixConn) {
	t.Helper()
	gw, agent := testenv.SeqpacketPair(t)
	f := newFDs(gw, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { f.Close() })
	return f, agent
}

func TestFDsUnsolicitedAreClosed(t *testing.T) {
	_, agent := fdsPair(t)
	master, slave, err := openPTY()
	if err != nil {
		t.Skip(err)
	}
	defer slave.Close()
	// A well-formed pty master, but nobody reserved id 42.
	if err := fdpass.Send(agent, fdpass.Message{Kind: fdpass.PTY, ID: 42}, master); err != nil {
		t.Fatal(err)
	}
	master.Close()
	if !hungUp(slave) {
		t.Error("descriptors nobody asked for were kept open")
	}
}

// hungUp reports whether every copy of slave's master is closed: a read
// then fails at once instead of blocking.
func hungUp(slave *os.File) bool {
	slave.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := slave.Read(make([]byte, 1))
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestFDsWrongKindIsClosedAndWaitFails(t *testing.T) {
	f, agent := fdsPair(t)
	id := f.Reserve()
	r, w := testenv.Pipe(t)
	// A pipe's write end as a pty master: Check refuses it.
	if err := fdpass.Send(agent, fdpass.Message{Kind: fdpass.PTY, ID: id}, w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, files, err := f.Wait(context.Background(), id, 500*time.Millisecond, fdpass.PTY); err == nil {
		fdpass.CloseAll(files)
		t.Fatal("Wait accepted a pipe as a pty master")
	}
	if !testenv.WritersGone(r) {
		t.Error("a descriptor of the wrong kind was kept open")
	}
}

func TestFDsKindNotAskedForIsClosed(t *testing.T) {
	f, agent := fdsPair(t)
	id := f.Reserve()
	// A real, well-formed socket, but the channel asked for pipes.
	a, b, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cf, _ := c.(*net.TCPConn).File()
	defer cf.Close()
	if err := fdpass.Send(agent, fdpass.Message{Kind: fdpass.Conn, ID: id}, cf); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Wait(context.Background(), id, 2*time.Second, fdpass.Pipes, fdpass.PTY); !errors.Is(err, fdpass.ErrBadFD) {
		t.Fatalf("Wait: %v, want ErrBadFD", err)
	}
}

func TestFDsLateArrivalIsClosed(t *testing.T) {
	f, agent := fdsPair(t)
	id := f.Reserve()
	if _, _, err := f.Wait(context.Background(), id, 50*time.Millisecond, fdpass.Pipes); err == nil {
		t.Fatal("Wait returned without descriptors")
	}
	master, slave, err := openPTY()
	if err != nil {
		t.Skip(err)
	}
	defer slave.Close()
	if err := fdpass.Send(agent, fdpass.Message{Kind: fdpass.PTY, ID: id}, master); err != nil {
		t.Fatal(err)
	}
	master.Close()
	// The master's only copy is now the gateway's, which it must have
	// closed.
	if !hungUp(slave) {
		t.Error("descriptors that came after the wait ended were kept open")
	}
}

func TestFDsAgentIDs(t *testing.T) {
	f, _ := fdsPair(t)
	if f.ReserveAgent(7) {
		t.Error("an agent id without the agent bit was taken")
	}
	id := uint64(fdpass.AgentIDBit | 7)
	if !f.ReserveAgent(id) {
		t.Fatal("a fresh agent id was refused")
	}
	if f.ReserveAgent(id) {
		t.Error("an agent id already waiting was taken twice")
	}
	f.Forget(id)
	if !f.ReserveAgent(id) {
		t.Error("a forgotten agent id could not be used again")
	}
}

// openPTY opens a pty pair whose slave is non-blocking, so a read of it
// honours a deadline.
func openPTY() (master, slave *os.File, err error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()
	sfd, err := unix.FcntlInt(s.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err == nil {
		err = unix.SetNonblock(sfd, true)
	}
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, os.NewFile(uintptr(sfd), s.Name()), nil
}
