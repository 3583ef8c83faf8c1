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
	tag  []byte // the gateway's tag for the session (fdpass.SharedRequest); nil: none
	dir  string
	path string
	ln   net.Listener
	done chan struct{} // closed when the accept loop has ended
}

// startAgentForward creates the socket in a fresh 0700 directory under the
// temp dir, like sshd's /tmp/ssh-XXXXXXXXXX/agent.<pid>: only the container
// user can reach it, whatever the socket's own mode.
func (c *linkConn) startAgentForward(id uint64, tag []byte) (*agentForward, error) {
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
	a := &agentForward{tag: tag, dir: dir, path: path, ln: ln, done: make(chan struct{})}
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
				c.forwardAgentConn(conn, tag)
			}()
		}
	}()
	return a, nil
}

// forwardAgentConn opens an auth-agent@openssh.com channel for conn; on a
// shared link its extra data is the session's tag, which names the client
// connection whose agent answers.
func (c *linkConn) forwardAgentConn(conn net.Conn, tag []byte) {
	const kind = "auth-agent@openssh.com"
	c.openAndCopy(c.channelLog(kind), kind, tag, conn)
}

// close removes the socket when the session ends; connections already made
// finish on their own (they are owned by the link).
func (a *agentForward) close() {
	a.ln.Close()
	<-a.done
	os.RemoveAll(a.dir)
}
