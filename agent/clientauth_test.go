package agent

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/sshtest"
)

func authorizedLine(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestParseAuthorizedKeys(t *testing.T) {
	a, b := sshtest.NewSigner(t).PublicKey(), sshtest.NewSigner(t).PublicKey()
	cases := []struct {
		name    string
		in      string
		want    []ssh.PublicKey
		wantErr string
	}{
		{"one key", authorizedLine(a), []ssh.PublicKey{a}, ""},
		{"key with comment", authorizedLine(a) + " gateway@host\n", []ssh.PublicKey{a}, ""},
		{"two keys, blanks and comments", "# the gateway\n\n" + authorizedLine(a) + "\n  \n" + authorizedLine(b) + " old\n", []ssh.PublicKey{a, b}, ""},
		{"empty", "", nil, "no authorized key"},
		{"comments only", "# nothing\n\n", nil, "no authorized key"},
		{"garbled line between keys", authorizedLine(a) + "\nssh-ed25519 AAAAnotbase64!\n" + authorizedLine(b), nil, "line 2: not an authorized key"},
		{"a private key", "-----BEGIN OPENSSH PRIVATE KEY-----\n", nil, "line 1: not an authorized key"},
		{"options", `from="10.0.0.1" ` + authorizedLine(a), nil, `line 1: key options (from="10.0.0.1") are not supported`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAuthorizedKeys([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if got != nil {
					t.Errorf("keys %v returned with the error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if string(got[i].Marshal()) != string(tc.want[i].Marshal()) {
					t.Errorf("key %d = %s, want %s", i, ssh.FingerprintSHA256(got[i]), ssh.FingerprintSHA256(tc.want[i]))
				}
			}
		})
	}
}

// A network listener proves nothing about its peer: without authorized
// keys Serve refuses it, and closes it.
func TestServeTCPNeedsAuthorizedKeys(t *testing.T) {
	ln, err := ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{HostKey: sshtest.NewSigner(t)}
	defer srv.Close()
	err = srv.Serve(ln)
	if !errors.Is(err, ErrNoClientAuth) {
		t.Fatalf("Serve = %v, want ErrNoClientAuth", err)
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the refused listener still accepts")
	}
}

func TestListenTCPBadAddress(t *testing.T) {
	for _, addr := range []string{"", "2222", "localhost", "127.0.0.1:notaport"} {
		ln, err := ListenTCP(addr)
		if err == nil {
			ln.Close()
			t.Errorf("ListenTCP(%q) listened on %s", addr, ln.Addr())
			continue
		}
		if !strings.Contains(err.Error(), "tcp:"+addr) {
			t.Errorf("ListenTCP(%q): %v does not name the address", addr, err)
		}
	}
}

// startTCPAgent serves on loopback TCP, admitting authorized.
func startTCPAgent(t *testing.T, authorized ...ssh.PublicKey) string {
	t.Helper()
	ln, err := ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := newSyncBuffer()
	srv := &Server{
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		HostKey:        sshtest.NewSigner(t),
		AuthorizedKeys: authorized,
		Home:           t.TempDir(),
		Shell:          "/bin/sh",
		HangupGrace:    500 * time.Millisecond,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-serveErr; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	return ln.Addr().String()
}

func dialTCP(t *testing.T, addr string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	t.Helper()
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            "sygaldry",
		Auth:            auth,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         5 * time.Second,
	})
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func TestTCPClientAuth(t *testing.T) {
	gw, other := sshtest.NewSigner(t), sshtest.NewSigner(t)
	addr := startTCPAgent(t, other.PublicKey(), gw.PublicKey())

	c, err := dialTCP(t, addr, ssh.PublicKeys(gw))
	if err != nil {
		t.Fatalf("the authorized key was refused: %v", err)
	}
	if r := run(t, c, "echo hi"); r.stdout != "hi\n" || exitCode(r.err) != 0 {
		t.Fatalf("exec over TCP: %q, %v", r.stdout, r.err)
	}

	if _, err := dialTCP(t, addr, ssh.PublicKeys(sshtest.NewSigner(t))); err == nil {
		t.Error("a key that is not authorized was admitted")
	}
	if _, err := dialTCP(t, addr); err == nil {
		t.Error("a client without a key was admitted")
	}
	if _, err := dialTCP(t, addr, ssh.Password("sygaldry")); err == nil {
		t.Error("a password was admitted")
	}
}

// With authorized keys the unix socket requires them too: the flag means
// what it says wherever the agent listens.
func TestUnixWithAuthorizedKeys(t *testing.T) {
	gw := sshtest.NewSigner(t)
	e := startAgent(t, func(s *Server) { s.AuthorizedKeys = []ssh.PublicKey{gw.PublicKey()} })
	conn, err := net.DialTimeout("unix", e.sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = ssh.NewClientConn(conn, "unix", &ssh.ClientConfig{
		User:            "sygaldry",
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         5 * time.Second,
	})
	conn.Close()
	if err == nil {
		t.Fatal("a client without a key was admitted on the unix socket")
	}
}
