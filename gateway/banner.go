package gateway

import (
	"fmt"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/sessions"
)

// loginNotices is implemented by Containers that have a line for the
// banner of an interactive login into a container (the container manager:
// a container that lost its GPUs, issue 7).
type loginNotices interface {
	LoginNotice(container string) string
}

// loginBanner writes the container's notice, if it has one, as the first
// line of an interactive login: a "shell" request on a session with a pty,
// before the request reaches the agent, so it comes before the shell's own
// output. Commands, sftp and shells without a pty are left alone: their
// output is data. One line, "\r\n"-terminated, since the pty is raw.
func (st *connState) loginBanner(ch gossh.Channel, sess *sessions.Session, req *gossh.Request, t Target) {
	if req.Type != "shell" || !sess.Info().PTY {
		return
	}
	n, ok := st.s.containers.(loginNotices)
	if !ok {
		return
	}
	if msg := n.LoginNotice(t.Name); msg != "" {
		fmt.Fprintf(ch, "sygaldry: %s\r\n", termLine(msg))
	}
}

// termLine keeps a notice on one line of printable text.
func termLine(s string) string {
	b := []rune(s)
	for i, r := range b {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			b[i] = ' '
		}
	}
	return string(b)
}
