package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkForward is one -L forward's throughput each way, OpenSSH's ssh
// as the client and the agent in this process handing the gateway the
// socket it dialed: what the gateway itself costs per byte (one AES-GCM
// hop). Run with -cpuprofile to see where an upload's time goes; the
// source, the sink and the gateway share this process, ssh does not.
func BenchmarkForward(b *testing.B) {
	for _, dir := range []string{"upload", "download"} {
		b.Run(dir, func(b *testing.B) {
			w := newInproc(b, true)
			const size = 256 << 20
			sink := tcpServer(b, func(c net.Conn) {
				if dir == "upload" {
					io.Copy(io.Discard, c)
				} else {
					io.CopyN(c, zeros{}, size)
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			lport := freePort(b)
			fwd := w.client.SSH(ctx, "-N", "-o", "ExitOnForwardFailure=yes",
				"-L", fmt.Sprintf("127.0.0.1:%d:%s", lport, sink), "--")
			if err := fwd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { fwd.Process.Kill(); fwd.Wait() }()
			addr := fmt.Sprintf("127.0.0.1:%d", lport)
			for i := 0; ; i++ {
				c, err := net.Dial("tcp", addr)
				if err == nil {
					c.Close()
					break
				}
				if i > 200 {
					b.Fatalf("the forward did not come up: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			b.SetBytes(size)
			b.ResetTimer()
			for range b.N {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				var n int64
				if dir == "upload" {
					n, err = io.CopyN(c, zeros{}, size)
					c.(*net.TCPConn).CloseWrite()
					io.Copy(io.Discard, c)
				} else {
					n, err = io.Copy(io.Discard, c)
				}
				c.Close()
				if err != nil || n != size {
					b.Fatalf("%s: %d bytes of %d: %v", dir, n, size, err)
				}
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
