package gateway_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gateway"
	"github.com/sygaldry/sygaldry/internal/fdpass"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/link"
)

// hostileAgent stands for an agent the container's user has taken over:
// whenever a session runs a command, it tries to open a channel of type typ
// towards the client (an agent connection, a forwarded port), asked for or
// not, and reports how the gateway answered.
type hostileAgent struct {
	target    gateway.Target
	typ       string
	malformed bool // open the channel with a payload cut short
	// shared: accept fdpass.SharedRequest, as a current agent does, and
	// send auth-agent channels with the tag the session got (forgeTag:
	// another connection's).
	shared, forgeTag bool
	opened           chan error
}

func (h *hostileAgent) Ensure(context.Context, config.Resolved, string, io.Writer) (gateway.Target, error) {
	return h.target, nil
}
func (*hostileAgent) Acquire(string) {}
func (*hostileAgent) Release(string) {}

func startHostileAgent(t *testing.T, typ string) *hostileAgent {
	t.Helper()
	return startHostileAgentWith(t, typ, hostileOpts{})
}

// hostileOpts are how a hostile agent's channel opens go wrong.
type hostileOpts struct {
	malformed, shared, forgeTag bool
}

// startHostileAgentWith is startHostileAgent whose channel opens carry a
// payload cut short when malformed is set, and which shares its link when
// shared is.
func startHostileAgentWith(t *testing.T, typ string, o hostileOpts) *hostileAgent {
	t.Helper()
	dir := testenv.ShortTempDir(t)
	host := sshtest.NewKey(t, dir, "agent-host-key")
	ns, err := link.PidNSOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, link.SocketName)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	h := &hostileAgent{
		target: gateway.Target{Name: "hostile", SocketPath: sock,
			Peer: link.Peer{Container: "hostile", PidNS: ns, HostKey: host.Signer.PublicKey()}},
		typ:       typ,
		malformed: o.malformed,
		shared:    o.shared,
		forgeTag:  o.forgeTag,
		opened:    make(chan error, 16),
	}
	cfg := &gossh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(host.Signer)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go h.serve(c, cfg)
		}
	}()
	return h
}

func (h *hostileAgent) serve(c net.Conn, cfg *gossh.ServerConfig) {
	sc, chans, reqs, err := gossh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	defer sc.Close()
	go func() {
		// Every forward request "succeeds": only the gateway refuses.
		for r := range reqs {
			r.Reply(r.Type != fdpass.SharedRequest || h.shared, nil)
		}
	}()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(gossh.ConnectionFailed, "nothing listens there")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			var tag []byte // the gateway's tag for the session, on a shared link
			for r := range creqs {
				r.Reply(true, nil)
				if r.Type == fdpass.TagRequest {
					tag = r.Payload
				}
				if r.Type != "exec" {
					continue
				}
				var extra []byte
				switch h.typ {
				case "auth-agent@openssh.com":
					if h.shared && len(tag) == 8 {
						extra = binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(tag))
						if h.forgeTag {
							extra = binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(tag)+1)
						}
					}
				case "forwarded-tcpip":
					extra = gossh.Marshal(struct {
						Addr     string
						Port     uint32
						OrigAddr string
						OrigPort uint32
					}{"127.0.0.1", 8080, "127.0.0.1", 40000})
				case "forwarded-streamlocal@openssh.com":
					extra = gossh.Marshal(struct{ Path, Reserved string }{"/tmp/s.sock", ""})
				}
				if h.malformed {
					extra = append([]byte{0, 0, 0, 200}, "127.0.0.1"...)
				}
				och, oreqs, err := sc.OpenChannel(h.typ, extra)
				if err == nil {
					go gossh.DiscardRequests(oreqs)
					och.Close()
				}
				h.opened <- err
				ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{0}))
				return
			}
		}()
	}
}

// The container is not trusted: channels its agent opens towards the client
// (agent connections, remote-forwarded connections) are refused by the
// gateway when the key may not have them, and when the client did not ask
// for agent forwarding or a remote forward on that connection.
//
// On a link the agent shares (fdpass.SharedRequest) the same holds, and an
// agent connection that carries another connection's tag is refused.
func TestAgentChannelsFollowKeyRestrictions(t *testing.T) {
	type testCase struct {
		options, typ string
		ask          bool // the client asks for agent forwarding or a remote forward first
		malformed    bool // the agent's channel-open payload is cut short
		delivered    bool
		forgeTag     bool // shared only: the agent connection carries another tag
	}
	cases := []testCase{
		{"", "auth-agent@openssh.com", true, false, true, false},
		{"", "auth-agent@openssh.com", false, false, false, false},
		{"no-agent-forwarding", "auth-agent@openssh.com", true, false, false, false},
		{"", "forwarded-tcpip", true, false, true, false},
		{"", "forwarded-tcpip", false, false, false, false},
		{"no-port-forwarding", "forwarded-tcpip", true, false, false, false},
		{"", "forwarded-tcpip", true, true, false, false},
		{"", "forwarded-streamlocal@openssh.com", true, false, true, false},
		{"", "forwarded-streamlocal@openssh.com", false, false, false, false},
		{"restrict", "forwarded-streamlocal@openssh.com", true, false, false, false},
		{"", "forwarded-streamlocal@openssh.com", true, true, false, false},
	}
	for _, shared := range []bool{false, true} {
		for _, tc := range append(cases, testCase{"", "auth-agent@openssh.com", true, false, false, true}) {
			if tc.forgeTag && !shared {
				continue
			}
			name := fmt.Sprintf("shared=%v/%s/%s/asked=%v/malformed=%v/forged=%v", shared, tc.typ, tc.options, tc.ask, tc.malformed, tc.forgeTag)
			t.Run(name, func(t *testing.T) {
				agentChannelCase(t, tc.typ, tc.options, tc.ask, tc.delivered, hostileOpts{tc.malformed, shared, tc.forgeTag})
			})
		}
	}
}

func agentChannelCase(t *testing.T, typ, options string, ask, delivered bool, o hostileOpts) {
	h := startHostileAgentWith(t, typ, o)
	cl := aliceThroughGateway(t, h, options)
	arrived := make(chan string, 4)
	go func() {
		for nc := range cl.HandleChannelOpen(typ) {
			arrived <- nc.ChannelType()
			nc.Reject(gossh.ConnectionFailed, "test client")
		}
	}()
	sess, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if ask {
		// What ssh -A and ssh -R send; the gateway may refuse them
		// for the key (a false reply), the test goes on either way.
		switch typ {
		case "auth-agent@openssh.com":
			_, err = sess.SendRequest("auth-agent-req@openssh.com", true, nil)
		case "forwarded-tcpip":
			_, _, err = cl.SendRequest("tcpip-forward", true, gossh.Marshal(struct {
				Addr string
				Port uint32
			}{"127.0.0.1", 8080}))
		case "forwarded-streamlocal@openssh.com":
			_, _, err = cl.SendRequest("streamlocal-forward@openssh.com", true, gossh.Marshal(struct{ Path string }{"/tmp/s.sock"}))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := sess.Run("anything"); err != nil {
		t.Fatalf("session: %v", err)
	}
	var openErr error
	select {
	case openErr = <-h.opened:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent never tried to open its channel")
	}
	var got bool
	select {
	case <-arrived:
		got = true
	case <-time.After(200 * time.Millisecond):
	}
	if got != delivered {
		t.Fatalf("channel reached the client: %v, want %v (the agent's open: %v)", got, delivered, openErr)
	}
	want := gossh.Prohibited
	if o.malformed {
		want = gossh.ConnectionFailed
	}
	if oe, ok := openErr.(*gossh.OpenChannelError); !delivered && (!ok || oe.Reason != want) {
		t.Fatalf("refused open: %v, want %v", openErr, want)
	}
}

// A key without port forwarding gets its -L (direct-tcpip), its
// direct-streamlocal channels and its -R requests (tcpip-forward,
// streamlocal-forward) refused by the gateway, before the agent is asked.
func TestForwardRequestsFollowKeyRestrictions(t *testing.T) {
	for _, options := range []string{"", "no-port-forwarding", "restrict"} {
		t.Run("options="+options, func(t *testing.T) {
			h := startHostileAgent(t, "none")
			cl := aliceThroughGateway(t, h, options)

			allowed := options == ""
			for typ, payload := range map[string][]byte{
				"tcpip-forward": gossh.Marshal(struct {
					Addr string
					Port uint32
				}{"127.0.0.1", 9000}),
				"streamlocal-forward@openssh.com": gossh.Marshal(struct{ Path string }{"/tmp/fwd.sock"}),
			} {
				ok, _, err := cl.SendRequest(typ, true, payload)
				if err != nil || ok != allowed {
					t.Errorf("%s: granted %v (%v), want %v", typ, ok, err, allowed)
				}
			}
			for typ, extra := range map[string][]byte{
				"direct-tcpip": gossh.Marshal(struct {
					Host     string
					Port     uint32
					OrigHost string
					OrigPort uint32
				}{"127.0.0.1", 8080, "127.0.0.1", 40000}),
				"direct-streamlocal@openssh.com": gossh.Marshal(struct {
					Path      string
					Reserved  string
					Reserved2 uint32
				}{"/tmp/app.sock", "", 0}),
			} {
				_, _, err := cl.OpenChannel(typ, extra)
				oe, ok := err.(*gossh.OpenChannelError)
				if !ok {
					t.Fatalf("%s: %v, want a refused open", typ, err)
				}
				// Allowed, the open reaches the agent (which has nothing
				// there); refused, the gateway says prohibited.
				if want := map[bool]gossh.RejectionReason{true: gossh.ConnectionFailed, false: gossh.Prohibited}[allowed]; oe.Reason != want {
					t.Errorf("%s: %v, want reason %v", typ, oe, want)
				}
			}
		})
	}
}

// aliceThroughGateway serves a gateway whose only container is h, with alice
// (her key line prefixed by options) a member of project zephyr, and returns
// her logged-in x/crypto client, closed when the test ends.
func aliceThroughGateway(t *testing.T, h *hostileAgent, options string) *gossh.Client {
	t.Helper()
	dir := testenv.ShortTempDir(t)
	alice := sshtest.NewKey(t, dir, "alice")
	cfg, err := config.Parse("t.toml", []byte(fmt.Sprintf(`
[server]
state_dir = %q
[projects.zephyr]
members = ["alice"]
[users.alice]
keys = [%q]
`, filepath.Join(dir, "state"), options+" "+alice.Authorized)))
	if err != nil {
		t.Fatal(err)
	}
	gw := mustNew(t, gateway.Options{Config: config.NewLive(cfg), Containers: h, Logger: slog.New(slog.NewTextHandler(testenv.LogWriter(t), nil))})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gw.Serve(l)
	t.Cleanup(func() { gw.Close() })
	cl, err := dialGo(l.Addr().String(), "zephyr", alice.Signer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}
