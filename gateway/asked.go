package gateway

import "sync/atomic"

// askedFor is what the client of one connection asked for that lets the
// container open channels back to it: agent forwarding (auth-agent-req on a
// session) and remote forwards (tcpip-forward, streamlocal-forward granted
// by the agent). The agent is not trusted: a channel it opens that the
// client never asked for is refused at the gateway, whatever the client
// would have done with it (OpenSSH refuses them too, other clients may not).
type askedFor struct {
	agent, tcpip, streamlocal atomic.Bool
}

// note records a request that was let through to the agent.
func (a *askedFor) note(reqType string) {
	switch reqType {
	case "auth-agent-req@openssh.com":
		a.agent.Store(true)
	case "tcpip-forward":
		a.tcpip.Store(true)
	case "streamlocal-forward@openssh.com":
		a.streamlocal.Store(true)
	}
}

// covers tells whether the agent may open a channel of type typ.
func (a *askedFor) covers(typ string) bool {
	switch typ {
	case "auth-agent@openssh.com":
		return a.agent.Load()
	case "forwarded-tcpip":
		return a.tcpip.Load()
	case "forwarded-streamlocal@openssh.com":
		return a.streamlocal.Load()
	}
	return false
}
