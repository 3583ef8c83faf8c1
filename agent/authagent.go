package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// agentForward is the SSH_AUTH_SOCK of one session (auth-agent-req@openssh.com).
// Each connection to it becomes an auth-agent@openssh.com channel opened
// back over the same link, which the gateway passes to the client's agent.
type agentForward struct {
	dir  string
	path string
	ln   net.Listener
	done chan struct{} // closed when the accept loop has ended
}

// startAgentForward creates the socket in a fresh 0700 directory under the
// temp dir, like sshd's /tmp/ssh-XXXXXXXXXX/agent.<pid>: only the container
// user can reach it, whatever the socket's own mode.
func (c *linkConn) startAgentForward(id uint64) (*agentForward, error) {
	dir, err := os.MkdirTemp("", "ssh-")
	if err != nil {
		return nil, fmt.Errorf("agent socket dir: %w", err)
	}
	path := filepath.Join(dir, "agent."+strconv.FormatUint(id, 10))
	ln, err := listenUnixMode(path, syscall.SOCK_STREAM, 0o600)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	a := &agentForward{dir: dir, path: path, ln: ln, done: make(chan struct{})}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(a.done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					c.log.Warn("agent socket accept failed", "path", path, "err", err)
				}
				return
			}
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.forwardAgentConn(conn)
			}()
		}
	}()
	return a, nil
}

func (c *linkConn) forwardAgentConn(conn net.Conn) {
	const kind = "auth-agent@openssh.com"
	c.openAndCopy(c.channelLog(kind), kind, nil, conn)
}

// close removes the socket when the session ends; connections already made
// finish on their own (they are owned by the link).
func (a *agentForward) close() {
	a.ln.Close()
	<-a.done
	os.RemoveAll(a.dir)
}
