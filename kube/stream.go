package kube

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/link"
)

// deliverScript receives the agent's host key (one base64 line) and then
// the agent binary on stdin. The binary is checked against its sha256 and
// renamed into place last: the pod's start script waits for it, so it never
// runs a partial file (an exec stream can end early and still exit 0).
const deliverScript = `set -e
umask 077
cd ` + agentDir + `
IFS= read -r k
printf '%s\n' "$k" | base64 -d > .key.tmp
mv -f .key.tmp agent_key
cat > .agent.tmp
echo "$1  .agent.tmp" | sha256sum -c --status || { echo "sygaldry: agent binary damaged in transit" >&2; exit 65; }
chmod 0755 .agent.tmp
mv -f .agent.tmp sygaldry-agent
`

// deliver streams the agent's host key and binary into the pod.
func (m *Manager) deliver(ctx context.Context, pod string, key []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	in := io.MultiReader(
		strings.NewReader(base64.StdEncoding.EncodeToString(key)+"\n"),
		bytes.NewReader(m.agent),
	)
	_, err := m.exec(ctx, pod, []string{"/bin/sh", "-c", deliverScript, "sh", m.sum}, in)
	return err
}

// exec runs cmd in the pod's main container and returns its stdout; a
// non-zero exit is an error carrying its stderr.
func (m *Manager) exec(ctx context.Context, pod string, cmd []string, stdin io.Reader) ([]byte, error) {
	req := m.o.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(m.ns()).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: mainContainer, Command: cmd,
			Stdin: stdin != nil, Stdout: true, Stderr: true,
		}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(m.o.REST, http.MethodPost, req.URL())
	if err != nil {
		return nil, err
	}
	// What comes back is the pod's: kept to a bound, the rest read and
	// dropped, so a pod cannot grow the gateway's memory through it.
	out, errb := &capBuffer{max: maxExecOutput}, &capBuffer{max: maxExecStderr}
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: out, Stderr: errb})
	if err != nil {
		if s := podText(errb.String()); s != "" {
			return out.Bytes(), fmt.Errorf("%w: %s", err, s)
		}
		return out.Bytes(), err
	}
	return out.Bytes(), nil
}

// Bounds of what an exec's output may keep (the jobs listing is at most
// maxJobs short lines; stderr only explains a failure).
const (
	maxExecOutput = 256 << 10
	maxExecStderr = 4 << 10
)

// capBuffer keeps the first max bytes written to it and drops the rest,
// still reporting every write as whole so the stream is drained.
type capBuffer struct {
	bytes.Buffer
	max int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// dialLink connects to a pod's agent and makes the link over it, proving
// both keys.
func (m *Manager) dialLink(ctx context.Context, mode, pod, ip string, hostKey gossh.PublicKey) (*gossh.Client, error) {
	var c net.Conn
	var err error
	switch mode {
	case config.KubeLinkPodIP:
		if ip == "" {
			return nil, fmt.Errorf("pod %s has no IP yet", pod)
		}
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(AgentPort)))
	default:
		c, err = m.portForward(ctx, pod, AgentPort)
	}
	if err != nil {
		return nil, err
	}
	return link.DialConn(ctx, c, hostKey, m.o.LinkKey, pod)
}

// portForward opens one stream to port inside the pod through the API
// server (as `kubectl port-forward` does for each connection), as a
// net.Conn. Each link gets its own upgraded connection, so closing the link
// closes it.
func (m *Manager) portForward(ctx context.Context, pod string, port int) (net.Conn, error) {
	rt, upgrader, err := spdy.RoundTripperFor(m.o.REST)
	if err != nil {
		return nil, err
	}
	url := m.o.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(m.ns()).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, url)
	type result struct {
		c   httpstream.Connection
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
		done <- result{c, err}
	}()
	var conn httpstream.Connection
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("port-forward to pod %s: %w", pod, r.err)
		}
		conn = r.c
	case <-ctx.Done():
		go func() {
			if r := <-done; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, context.Cause(ctx)
	}
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, "0")
	errStream, err := conn.CreateStream(h)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("port-forward to pod %s: %w", pod, err)
	}
	errStream.Close() // nothing is written to it
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(h)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("port-forward to pod %s: %w", pod, err)
	}
	fc := &forwardConn{conn: conn, data: data, pod: pod, port: port}
	go fc.watchErrors(errStream)
	return fc, nil
}

// forwardConn is a port-forward data stream as a net.Conn. Deadlines are
// kept by closing the connection when one passes (the streams have none).
type forwardConn struct {
	conn httpstream.Connection
	data httpstream.Stream
	pod  string
	port int

	mu       sync.Mutex
	timer    *time.Timer
	expired  bool
	remoteEr error
}

func (f *forwardConn) watchErrors(s httpstream.Stream) {
	msg, _ := io.ReadAll(s)
	if len(msg) > 0 {
		f.mu.Lock()
		f.remoteEr = fmt.Errorf("port-forward to pod %s port %d: %s", f.pod, f.port, strings.TrimSpace(string(msg)))
		f.mu.Unlock()
		f.conn.Close()
	}
}

func (f *forwardConn) err(err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.remoteEr != nil:
		return f.remoteEr
	case f.expired && err != nil:
		return errDeadline
	}
	return err
}

func (f *forwardConn) Read(p []byte) (int, error) {
	n, err := f.data.Read(p)
	return n, f.err(err)
}

func (f *forwardConn) Write(p []byte) (int, error) {
	n, err := f.data.Write(p)
	return n, f.err(err)
}

func (f *forwardConn) Close() error {
	f.mu.Lock()
	if f.timer != nil {
		f.timer.Stop()
	}
	f.mu.Unlock()
	f.data.Close()
	return f.conn.Close()
}

func (f *forwardConn) LocalAddr() net.Addr  { return forwardAddr("gateway") }
func (f *forwardConn) RemoteAddr() net.Addr { return forwardAddr(f.pod + ":" + strconv.Itoa(f.port)) }

// SetDeadline: a deadline in the past or one that passes closes the
// connection (the handshake's bound); the zero time clears it.
func (f *forwardConn) SetDeadline(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
	if t.IsZero() {
		return nil
	}
	f.timer = time.AfterFunc(time.Until(t), func() {
		f.mu.Lock()
		f.expired = true
		f.mu.Unlock()
		f.conn.Close()
	})
	return nil
}

func (f *forwardConn) SetReadDeadline(t time.Time) error  { return f.SetDeadline(t) }
func (f *forwardConn) SetWriteDeadline(t time.Time) error { return f.SetDeadline(t) }

type forwardAddr string

func (a forwardAddr) Network() string { return "portforward" }
func (a forwardAddr) String() string  { return string(a) }

var errDeadline = errors.New("port-forward: deadline exceeded")
