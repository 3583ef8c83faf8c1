// Package client talks to a running gateway's admin API over its unix
// socket. It is all sygctl needs; it imports no gateway internals (the wire
// types are package api's, sessions.Info being a plain data type).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/sessions"
)

// DefaultSocket is where the gateway's admin socket lives unless the config
// says otherwise (server.admin_socket).
const DefaultSocket = "/run/sygaldry/admin.sock"

// ErrNotFound is wrapped by the error for an unknown session (HTTP 404).
var ErrNotFound = errors.New("not found")

// ErrPermission is wrapped by the error for a caller the gateway refuses
// (HTTP 403), and by UnreachableError when the socket is not ours to open.
var ErrPermission = errors.New("permission denied")

// Session is one live or ended session (the `sygctl sessions --json` contract).
type Session = sessions.Info

// Client is an admin API client. Its methods are safe for concurrent use.
type Client struct {
	socket string
	hc     *http.Client
}

// New returns a client for the admin socket at socketPath (empty:
// DefaultSocket). Nothing is dialled until a method is called.
func New(socketPath string) *Client {
	if socketPath == "" {
		socketPath = DefaultSocket
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns:    1,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{socket: socketPath, hc: &http.Client{Transport: tr}}
}

// Socket returns the socket path the client dials.
func (c *Client) Socket() string { return c.socket }

// Status reports the gateway's version, start time and live session count.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Sessions returns the live sessions, oldest first, with a row of kind
// KindConnection for each client connection that has no channel open.
func (c *Client) Sessions(ctx context.Context) ([]Session, error) {
	var out []Session
	err := c.do(ctx, http.MethodGet, "/v1/sessions", nil, &out)
	return out, err
}

// History returns the last n ended sessions, oldest first (n <= 0: all).
func (c *Client) History(ctx context.Context, n int) ([]Session, error) {
	if n < 0 {
		n = 0
	}
	var out []Session
	err := c.do(ctx, http.MethodGet, "/v1/sessions/history?n="+strconv.Itoa(n), nil, &out)
	return out, err
}

// Kill ends the live session id; its user is told reason. An unknown or
// already ended session gives an error wrapping ErrNotFound. A connection
// ID ("c<N>", the id of a row of kind KindConnection) ends that connection.
func (c *Client) Kill(ctx context.Context, id, reason string) error {
	_, err := c.kill(ctx, id, reason, false)
	return err
}

// KillConn ends the whole client connection that the session (or
// connection) id belongs to: every session and forward on it, and the
// connection itself; each open session's user is told reason. It returns
// the connection's ID. An unknown id gives an error wrapping ErrNotFound.
func (c *Client) KillConn(ctx context.Context, id, reason string) (string, error) {
	return c.kill(ctx, id, reason, true)
}

// KindConnection is the kind of a Sessions row that stands for a client
// connection with no channel open.
const KindConnection = sessions.KindConnection

func (c *Client) kill(ctx context.Context, id, reason string, conn bool) (string, error) {
	body, err := json.Marshal(api.KillRequest{Reason: reason, Connection: conn})
	if err != nil {
		return "", err
	}
	var resp api.KillResponse
	err = c.do(ctx, http.MethodPost, "/v1/sessions/"+url.PathEscape(id)+"/kill", body, &resp)
	return resp.Conn, err
}

// Containers returns the containers the gateway manages.
func (c *Client) Containers(ctx context.Context) ([]api.ContainerInfo, error) {
	var out []api.ContainerInfo
	err := c.do(ctx, http.MethodGet, "/v1/containers", nil, &out)
	return out, err
}

// GPUs returns the host's GPUs as the gateway sees them through NVML.
func (c *Client) GPUs(ctx context.Context) (api.GPUReport, error) {
	var out api.GPUReport
	err := c.do(ctx, http.MethodGet, "/v1/gpus", nil, &out)
	return out, err
}

// Reload makes the gateway reread its configuration file, as SIGHUP
// does, and reports what it applied and what needs a restart. A file the
// gateway refused gives an *APIError (HTTP 422) whose Message names
// file:line; the running configuration stays in force.
func (c *Client) Reload(ctx context.Context) (api.ReloadReport, error) {
	var out api.ReloadReport
	err := c.do(ctx, http.MethodPost, "/v1/reload", nil, &out)
	return out, err
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// The host is a placeholder: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://sygaldry-gateway"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("gateway at %s did not answer: %w", c.socket, ctxErr)
		}
		ue := &UnreachableError{Socket: c.socket, Err: err}
		// connect(2) on a file that is not a socket says ECONNREFUSED too.
		if fi, serr := os.Stat(c.socket); serr == nil && fi.Mode().Type() != os.ModeSocket {
			ue.notSocket = true
		}
		return ue
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read the gateway's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{StatusCode: resp.StatusCode}
		var eb api.Error
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			e.Message = eb.Error
		} else {
			e.Message = http.StatusText(resp.StatusCode)
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode the gateway's answer to %s %s: %w", method, path, err)
	}
	return nil
}

// APIError is an error answer from the gateway.
type APIError struct {
	StatusCode int
	Message    string // the gateway's {"error": ...}
}

func (e *APIError) Error() string { return e.Message }

// Is makes errors.Is(err, ErrNotFound) and errors.Is(err, ErrPermission)
// work on the status code.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrPermission:
		return e.StatusCode == http.StatusForbidden
	}
	return false
}

// UnreachableError means no gateway answered on the socket.
type UnreachableError struct {
	Socket string
	Err    error // the dial or transport error

	notSocket bool // something other than a socket is at Socket
}

func (e *UnreachableError) Error() string {
	msg := "cannot reach the gateway at " + e.Socket + ": is sygaldry-gateway running?"
	switch {
	case e.notSocket || errors.Is(e.Err, syscall.ENOTSOCK):
		return "cannot reach the gateway at " + e.Socket + ": that is not a socket (is --socket or server.admin_socket right?)"
	case errors.Is(e.Err, syscall.ENOENT):
		return msg + " (no socket there; pass --socket or --config if it lives elsewhere)"
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		return msg + " (connection refused: the socket is stale)"
	case errors.Is(e.Err, syscall.EACCES), errors.Is(e.Err, syscall.EPERM):
		return msg + " (permission denied: run as root)"
	}
	return msg + " (" + rootCause(e.Err).Error() + ")"
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Is lets errors.Is(err, ErrPermission) hold for a socket we may not open.
func (e *UnreachableError) Is(target error) bool {
	return target == ErrPermission && (errors.Is(e.Err, syscall.EACCES) || errors.Is(e.Err, syscall.EPERM))
}

// rootCause strips net/http's and net's wrapping ("Get \"http://...\": dial
// unix ...: ") down to the system's words.
func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
