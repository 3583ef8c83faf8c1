package link

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/fdpass"
)

// FDSocketName is the agent's descriptor socket (fdpass protocol) inside the
// link directory, next to SocketName.
const FDSocketName = "fd.sock"

// ErrNoFDs means the agent does not hand over descriptors (an agent older
// than the protocol, still running in a container made before it): the
// link carries the bytes itself, as before.
var ErrNoFDs = errors.New("agent does not pass descriptors")

// FDs is the gateway's end of one agent's descriptor socket, bound to one
// link. Channels reserve an id, tell the agent (fdpass.IDRequest), and collect
// what the agent sends under it with Wait.
type FDs struct {
	c   *net.UnixConn
	log *slog.Logger

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]chan batch
	err     error // set when the reader stopped
	done    chan struct{}
}

type batch struct {
	kind  fdpass.Kind
	files []*os.File
}

// DialFDs opens the descriptor socket in the directory of socketPath, proves
// its peer the way Dial does (pid namespace and cgroup of want), and binds
// it to cl, the link already proven by want's host key: the gateway sends a
// fresh token on the socket and the same token inside the encrypted link,
// and only an agent that received both answers yes. It returns ErrNoFDs
// when the agent does not know the protocol.
func DialFDs(ctx context.Context, socketPath string, want Peer, cl *gossh.Client, log *slog.Logger) (*FDs, error) {
	if want.PidNS.zero() {
		return nil, fmt.Errorf("%w: no pid namespace to check the peer of %s against", ErrUntrusted, socketPath)
	}
	path := filepath.Join(filepath.Dir(socketPath), FDSocketName)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoFDs
	}
	nc, err := dialVerified(ctx, "unixpacket", path, want)
	if err != nil {
		return nil, err
	}
	c, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("%w: %s is not a unix socket", ErrUntrusted, path)
	}
	token := make([]byte, fdpass.TokenSize)
	rand.Read(token)
	if dl, ok := ctx.Deadline(); ok {
		c.SetWriteDeadline(dl)
	}
	if err := fdpass.Send(c, fdpass.Message{Kind: fdpass.Hello, Token: token}); err != nil {
		c.Close()
		return nil, err
	}
	c.SetWriteDeadline(time.Time{})
	granted, _, err := cl.SendRequest(fdpass.BindRequest, true, token)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("bind descriptor socket: %w", err)
	}
	if !granted {
		c.Close()
		return nil, ErrNoFDs
	}
	return newFDs(c, log), nil
}

// newFDs serves the descriptor connection c, already bound to its link.
func newFDs(c *net.UnixConn, log *slog.Logger) *FDs {
	if log == nil {
		log = slog.Default()
	}
	f := &FDs{c: c, log: log, waiting: make(map[uint64]chan batch), done: make(chan struct{})}
	go f.read()
	return f
}

// read delivers each checked message to the channel that reserved its id;
// anything else is closed at once.
func (f *FDs) read() {
	defer close(f.done)
	for {
		m, files, err := fdpass.Receive(f.c)
		if errors.Is(err, fdpass.ErrMalformed) {
			f.log.Warn("agent sent a malformed descriptor message; dropped", "err", err)
			continue
		}
		if err != nil {
			f.stop(err)
			return
		}
		if err := fdpass.Check(m.Kind, files); err != nil {
			fdpass.CloseAll(files)
			f.log.Warn("agent sent descriptors of the wrong kind; closed them", "id", m.ID, "err", err)
			continue
		}
		// Sent under the lock, so Forget (which deletes under it) either
		// finds the batch in the buffer or the batch finds no one.
		f.mu.Lock()
		delivered := false
		if ch := f.waiting[m.ID]; ch != nil {
			select {
			case ch <- batch{m.Kind, files}:
				delivered = true
			default: // a second batch for one id
			}
		}
		f.mu.Unlock()
		if !delivered {
			fdpass.CloseAll(files)
			f.log.Warn("agent sent descriptors nobody asked for; closed them", "id", m.ID, "kind", m.Kind)
		}
	}
}

func (f *FDs) stop(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
	f.c.Close()
}

// Close ends the descriptor socket; waiting channels get an error.
func (f *FDs) Close() error {
	f.stop(net.ErrClosed)
	<-f.done
	return nil
}

// Reserve returns a new id to hand to the agent. Release it with Wait or
// Forget.
func (f *FDs) Reserve() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	f.waiting[f.next] = make(chan batch, 1)
	return f.next
}

// ReserveAgent registers an id the agent chose (fdpass.AgentIDBit set) for
// a channel it opened; false when the id is not the agent's kind or is
// already waiting.
func (f *FDs) ReserveAgent(id uint64) bool {
	if id&fdpass.AgentIDBit == 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.waiting[id] != nil {
		return false
	}
	f.waiting[id] = make(chan batch, 1)
	return true
}

// Forget gives up on id; descriptors that arrived for it are closed.
func (f *FDs) Forget(id uint64) {
	f.mu.Lock()
	ch := f.waiting[id]
	delete(f.waiting, id)
	f.mu.Unlock()
	if ch != nil {
		select {
		case b := <-ch:
			fdpass.CloseAll(b.files)
		default:
		}
	}
}

// Wait returns the descriptors the agent sent under id, which must be one
// of kinds (checked by fdpass.Check), within timeout. On any error nothing
// is left open.
func (f *FDs) Wait(ctx context.Context, id uint64, timeout time.Duration, kinds ...fdpass.Kind) (fdpass.Kind, []*os.File, error) {
	f.mu.Lock()
	ch := f.waiting[id]
	f.mu.Unlock()
	if ch == nil {
		return 0, nil, fmt.Errorf("descriptors %d: not reserved", id)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case b := <-ch:
		f.Forget(id) // closes a duplicate that may follow
		for _, k := range kinds {
			if b.kind == k {
				return b.kind, b.files, nil
			}
		}
		fdpass.CloseAll(b.files)
		return 0, nil, fmt.Errorf("%w: got %s for id %d, want one of %v", fdpass.ErrBadFD, b.kind, id, kinds)
	case <-f.done:
		f.Forget(id)
		return 0, nil, fmt.Errorf("descriptor socket closed: %v", f.err)
	case <-ctx.Done():
		f.Forget(id)
		return 0, nil, context.Cause(ctx)
	case <-t.C:
		f.Forget(id)
		return 0, nil, fmt.Errorf("no descriptors from the agent for id %d within %v", id, timeout)
	}
}
