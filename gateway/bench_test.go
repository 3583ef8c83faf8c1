package gateway_test

import (
	"fmt"
	"io"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// BenchmarkExecDownload measures one session's throughput from a command in
// the container to an x/crypto client, through the gateway and the link
// (AES-GCM on both hops). b.SetBytes makes `go test -bench` print MB/s.
func BenchmarkExecDownload(b *testing.B) {
	benchTransfer(b, func(s *gossh.Session, n int64) error {
		out, err := s.StdoutPipe()
		if err != nil {
			return err
		}
		if err := s.Start(fmt.Sprintf("head -c %d /dev/zero", n)); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, out); err != nil {
			return err
		}
		return s.Wait()
	})
}

// BenchmarkExecUpload is the other direction: the client's bytes into `cat
// >/dev/null` in the container.
func BenchmarkExecUpload(b *testing.B) {
	benchTransfer(b, func(s *gossh.Session, n int64) error {
		in, err := s.StdinPipe()
		if err != nil {
			return err
		}
		if err := s.Start("cat >/dev/null"); err != nil {
			return err
		}
		buf := make([]byte, 256<<10)
		for left := n; left > 0; left -= int64(len(buf)) {
			if _, err := in.Write(buf[:min(int64(len(buf)), left)]); err != nil {
				return err
			}
		}
		in.Close()
		return s.Wait()
	})
}

// BenchmarkLoginExec is the latency of a whole new connection (handshake,
// auth, link, exec) running `true` in an already running container.
func BenchmarkLoginExec(b *testing.B) {
	w := newWorld(b)
	addr := "127.0.0.1:" + w.port
	warm, err := dialGo(addr, w.project, w.alice.Signer)
	if err != nil {
		b.Fatal(err)
	}
	s, _ := warm.NewSession()
	if err := s.Run("true"); err != nil {
		b.Fatal(err)
	}
	warm.Close()
	b.ResetTimer()
	for range b.N {
		c, err := dialGo(addr, w.project, w.alice.Signer)
		if err != nil {
			b.Fatal(err)
		}
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Run("true"); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

func benchTransfer(b *testing.B, run func(*gossh.Session, int64) error) {
	w := newWorld(b)
	c, err := dialGo("127.0.0.1:"+w.port, w.project, w.alice.Signer)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const size = 256 << 20
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		if err := run(s, size); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
