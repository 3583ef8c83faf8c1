package gateway

// Authorization stays true while a connection lives (issue 6). A login is
// decided once, but a connection can last for days (a ControlMaster, VS
// Code, an `ssh -N` tunnel). So:
//
//   - every new channel, every global request and every channel the agent
//     opens towards the client re-checks the identity recorded at login
//     against the config in force: the user still exists, the key or
//     certificate still authenticates that user (for a certificate: its CA
//     is still trusted and a principal still names the user), and the user
//     is still a member of the project;
//   - a reload that takes any of that away ends the user's connections to
//     the projects concerned: each open session gets one line on its
//     stderr, then the connection closes;
//   - an admin can end a whole connection (sessions.Registry.KillConn).

import (
	"context"
	"fmt"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"net"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/sessions"
)

// extKeyBlob holds the wire form of the key or certificate that
// authenticated the connection, so it can be checked again later.
const extKeyBlob = "sygaldry-key-blob"

// endGrace is how long an ended connection's sessions get to tell their
// users why before the connection closes.
const endGrace = 2 * time.Second

// loggedIn records what a re-check needs in the connection's permissions,
// and lists the connection in the session registry. It runs once the key's
// signature has been verified and the login authorized, and returns false
// when a reload withdrew that authorization meanwhile.
func (s *Server) loggedIn(ctx ssh.Context, perms *gossh.Permissions, key gossh.PublicKey, remote net.Addr) bool {
	perms.Extensions[extKeyBlob] = string(key.Marshal())
	st := stateOf(ctx)
	if st == nil {
		return true
	}
	// From here a reload's sweep sees this login (endRevoked); a reload
	// that came before it is seen by the check below. (The handshake is
	// not over: sshConn is still nil.)
	st.perms.Store(perms)
	if why := s.revocation(perms.Extensions, remote); why != "" {
		st.log.Warn("login refused: a reload withdrew its access during the handshake", "reason", why)
		return false
	}
	e := s.sessions.AddConn(sessions.Info{
		ID: st.id, User: perms.Extensions[extUser], Project: perms.Extensions[extProject],
		RemoteAddr: remote.String(), Started: st.start.UTC(),
	}, func(cause error) {
		st.log.Warn("ending connection", "reason", cause)
		st.end(cause)
	})
	if old := st.entry.Swap(e); old != nil {
		s.sessions.EndConn(old)
	}
	return true
}

// revocation says why the identity recorded at login does not hold under
// the config in force, or "" when it still does.
func (s *Server) revocation(ext map[string]string, remote net.Addr) string {
	user, project := ext[extUser], ext[extProject]
	key, err := gossh.ParsePublicKey([]byte(ext[extKeyBlob]))
	if err != nil {
		return "the key of the login was not recorded"
	}
	// The whole login decision again, so that whatever it checks (user,
	// key or CA and principal, membership, revoked keys, key options)
	// holds for the life of the connection.
	if got, ok := s.authorize(project, key, remote); ok && got == user {
		return ""
	}
	// Only the reason for the log is worked out here.
	cfg := s.conf()
	if _, ok := cfg.Users[user]; !ok {
		return "user " + user + " is no longer configured"
	}
	p, ok := cfg.Project(project)
	if !ok {
		return "project " + project + " is no longer configured"
	}
	if !p.IsMember(user) {
		return user + " is no longer a member of " + project
	}
	return "the key or certificate " + gossh.FingerprintSHA256(key) + " no longer authenticates " + user
}

// stillAuthorized returns nil while the connection may open channels and
// make requests; otherwise why not, with the line its user is told.
func (st *connState) stillAuthorized() error {
	if st.ending.Load() {
		if c := context.Cause(st.life); c != nil {
			return c
		}
		return usererr.Errorf("this connection is closing")
	}
	perms := st.perms.Load()
	if perms == nil || perms.Extensions[extUser] == "" {
		return usererr.Errorf("not authenticated")
	}
	ext := perms.Extensions
	if why := st.s.revocation(ext, st.raw.RemoteAddr()); why != "" {
		return usererr.New(fmt.Sprintf("your access to %s was withdrawn by the administrator; this connection is closed", ext[extProject]),
			fmt.Errorf("access revoked: %s", why))
	}
	return nil
}

// admit re-checks the connection before it does something new. When the
// check fails the connection is ended (its sessions are told why) and
// false is returned.
func (st *connState) admit(what string) bool {
	err := st.stillAuthorized()
	if err == nil {
		return true
	}
	if !st.ending.Load() {
		user, project := st.identity()
		st.log.Warn("refused and ending connection: authorization no longer holds", "user", user, "project", project, "refused", what, "reason", err)
		st.end(err)
	}
	return false
}

// admitChannel re-checks before a client channel is served; a refused
// channel is rejected.
func (st *connState) admitChannel(nc gossh.NewChannel) bool {
	hookPoint("channel", st.project())
	if !st.admit("channel " + nc.ChannelType()) {
		nc.Reject(gossh.Prohibited, "this connection is being closed")
		return false
	}
	return true
}

// admitRequest re-checks before a global request is passed on.
func (st *connState) admitRequest(typ string) bool {
	hookPoint("request", st.project())
	return st.admit("request " + typ)
}

// admitAgentChannel re-checks before a channel the agent opens (a remote
// forward's connection, agent forwarding) reaches the client.
func (st *connState) admitAgentChannel(nc gossh.NewChannel, typ string) bool {
	hookPoint("agent-channel", st.project())
	if !st.admit("agent channel " + typ) {
		nc.Reject(gossh.Prohibited, "this connection is being closed")
		return false
	}
	return true
}

func (st *connState) project() string {
	_, p := st.identity()
	return p
}

// end ends the connection because of cause: each open session is told
// usererr.Message(cause) on its stderr, new channels and requests are refused,
// and run closes the connection once the channels are done (at most
// endGrace later). The caller logs why.
func (st *connState) end(cause error) {
	if st.ending.CompareAndSwap(false, true) {
		st.endLife(cause)
	}
}

// closeAfterChannels waits (at most endGrace) for the channels to finish
// telling their users, then closes the connection.
func (st *connState) closeAfterChannels() {
	deadline := time.Now().Add(endGrace)
	for st.chans.open() > 0 && time.Now().Before(deadline) {
		select {
		case <-st.ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	if c := st.sshConn(); c != nil {
		c.Close()
	} else {
		st.raw.Close()
	}
}

// endRevoked ends the connections whose authorization the config now in
// force no longer grants. Reload calls it.
func (s *Server) endRevoked() (ended int) {
	for _, st := range s.conns.list() {
		if st.perms.Load() == nil || st.ending.Load() {
			continue // not logged in (loggedIn checks against this config)
		}
		if err := st.stillAuthorized(); err != nil {
			user, project := st.identity()
			st.log.Warn("ending connection: the reloaded config withdrew its access", "user", user, "project", project, "reason", err)
			st.end(err)
			ended++
		}
	}
	return ended
}
