package fdpass

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/sygaldry/sygaldry/internal/testenv"
)

// pair is a connected SOCK_SEQPACKET pair, as between gateway and agent.
func pair(t *testing.T) (a, b *net.UnixConn) { return testenv.SeqpacketPair(t) }

func TestRoundTripPipes(t *testing.T) {
	a, b := pair(t)
	inR, inW := testenv.Pipe(t)
	outR, outW := testenv.Pipe(t)
	errR, _ := testenv.Pipe(t)
	if err := Send(a, Message{Kind: Pipes, ID: 7}, inW, outR, errR); err != nil {
		t.Fatal(err)
	}
	m, files, err := Receive(b)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(files)
	if m.Kind != Pipes || m.ID != 7 || len(files) != 3 {
		t.Fatalf("got %+v with %d files", m, len(files))
	}
	if err := Check(Pipes, files); err != nil {
		t.Fatalf("Check: %v", err)
	}
	// The received descriptors are the real pipe ends.
	files[0].Write([]byte("in"))
	buf := make([]byte, 2)
	io.ReadFull(inR, buf)
	if string(buf) != "in" {
		t.Errorf("stdin carried %q", buf)
	}
	outW.Write([]byte("ou"))
	io.ReadFull(files[1], buf)
	if string(buf) != "ou" {
		t.Errorf("stdout carried %q", buf)
	}
}

func TestHelloNeedsAToken(t *testing.T) {
	a, b := pair(t)
	tok := bytes.Repeat([]byte{1}, TokenSize)
	if err := Send(a, Message{Kind: Hello, Token: tok}); err != nil {
		t.Fatal(err)
	}
	m, _, err := Receive(b)
	if err != nil || m.Kind != Hello || !bytes.Equal(m.Token, tok) {
		t.Fatalf("hello: %+v, %v", m, err)
	}
	for _, raw := range [][]byte{
		Encode(Message{Kind: Hello, Token: tok[:5]}),
		Encode(Message{Kind: Hello, ID: 3, Token: tok}),
		Encode(Message{Kind: Pipes, ID: 0}),
		{2, 1, 0, 0, 0, 0, 0, 0, 0, 0},  // version 2
		{1, 99, 0, 0, 0, 0, 0, 0, 0, 1}, // unknown kind
		{1, 1},
	} {
		if _, err := a.Write(raw); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Receive(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: err %v, want ErrMalformed", raw, err)
		}
	}
}

// sendRaw attaches fds to an arbitrary packet, as a hostile agent could.
func sendRaw(t *testing.T, c *net.UnixConn, b []byte, files ...*os.File) {
	t.Helper()
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	if _, _, err := c.WriteMsgUnix(b, unix.UnixRights(fds...), nil); err != nil {
		t.Fatal(err)
	}
}

func TestMalformedMessagesCloseTheirDescriptors(t *testing.T) {
	cases := map[string]func(w *os.File) ([]byte, []*os.File){
		// Pipes promises three descriptors; one came.
		"wrong count": func(w *os.File) ([]byte, []*os.File) {
			return Encode(Message{Kind: Pipes, ID: 1}), []*os.File{w}
		},
		// Descriptors on a message that carries none.
		"hello with a descriptor": func(w *os.File) ([]byte, []*os.File) {
			return Encode(Message{Kind: Hello, Token: make([]byte, TokenSize)}), []*os.File{w}
		},
		// More descriptors than the receiver makes room for: MSG_CTRUNC.
		"too many": func(w *os.File) ([]byte, []*os.File) {
			fs := make([]*os.File, 12)
			for i := range fs {
				fs[i] = w
			}
			return Encode(Message{Kind: PTY, ID: 1}), fs
		},
		// A packet longer than any message: MSG_TRUNC.
		"too long": func(w *os.File) ([]byte, []*os.File) {
			return append(Encode(Message{Kind: PTY, ID: 1}), make([]byte, 100)...), []*os.File{w}
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			a, b := pair(t)
			r, w := testenv.Pipe(t)
			raw, files := mk(w)
			sendRaw(t, a, raw, files...)
			w.Close() // our copy; only the one in flight is left
			if _, got, err := Receive(b); !errors.Is(err, ErrMalformed) || got != nil {
				t.Fatalf("err %v, %d files; want ErrMalformed and none", err, len(got))
			}
			if !testenv.WritersGone(r) {
				t.Error("the receiver kept a descriptor of a refused message open")
			}
			// The connection is still usable afterwards.
			if err := Send(a, Message{Kind: Declined, ID: 9}); err != nil {
				t.Fatal(err)
			}
			if m, _, err := Receive(b); err != nil || m.Kind != Declined {
				t.Fatalf("next message: %+v, %v", m, err)
			}
		})
	}
}

func TestCheckRefusesTheWrongKinds(t *testing.T) {
	r, w := testenv.Pipe(t)
	file, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer slave.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnFile, _ := ln.(*net.TCPListener).File()
	defer lnFile.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	udpFile, _ := udp.(*net.UDPConn).File()
	defer udpFile.Close()
	dialed, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	connFile, _ := dialed.(*net.TCPConn).File()
	defer connFile.Close()

	good := []struct {
		kind  Kind
		files []*os.File
	}{
		{Pipes, []*os.File{w, r, r}},
		{PTY, []*os.File{master}},
		{Conn, []*os.File{connFile}},
	}
	for _, g := range good {
		if err := Check(g.kind, g.files); err != nil {
			t.Errorf("%s: %v", g.kind, err)
		}
	}
	bad := []struct {
		name  string
		kind  Kind
		files []*os.File
	}{
		{"stdin is a read end", Pipes, []*os.File{r, r, r}},
		{"stdout is a write end", Pipes, []*os.File{w, w, r}},
		{"a regular file as stdout", Pipes, []*os.File{w, file, r}},
		{"a pty slave as master", PTY, []*os.File{slave}},
		{"a pipe as master", PTY, []*os.File{r}},
		{"a listening socket", Conn, []*os.File{lnFile}},
		{"a datagram socket", Conn, []*os.File{udpFile}},
		{"a pipe as a socket", Conn, []*os.File{r}},
		{"too few", Pipes, []*os.File{w}},
	}
	for _, b := range bad {
		if err := Check(b.kind, b.files); !errors.Is(err, ErrBadFD) {
			t.Errorf("%s: err %v, want ErrBadFD", b.name, err)
		}
	}
}

func TestReceiveReportsClose(t *testing.T) {
	a, b := pair(t)
	a.Close()
	if _, _, err := Receive(b); err == nil || errors.Is(err, ErrMalformed) {
		t.Fatalf("err %v after the peer closed, want a connection error", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(Message{Kind: Hello, Token: make([]byte, TokenSize)}), 0)
	f.Add(Encode(Message{Kind: Pipes, ID: 1}), 3)
	f.Add(Encode(Message{Kind: PTY, ID: 2}), 1)
	f.Add(Encode(Message{Kind: Declined, ID: 2}), 0)
	f.Fuzz(func(t *testing.T, b []byte, nfds int) {
		m, err := Decode(b, nfds)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if nfds != m.Kind.fds() || (m.Kind == Hello) != (m.ID == 0) {
			t.Fatalf("accepted %+v with %d descriptors", m, nfds)
		}
		if !bytes.Equal(Encode(m), b) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", b, m, Encode(m))
		}
	})
}
