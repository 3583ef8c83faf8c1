package gateway

import "github.com/sygaldry/sygaldry/sessions"

// recordedCommand is what the registry, the history and the log keep of an
// exec command: nothing when server.log_commands is false (commands often
// carry tokens), else the command cut to sessions.MaxCommand bytes (the
// registry cuts whatever it is given too). A nil s (a bare connState in
// unit tests) keeps the cut command.
func (s *Server) recordedCommand(cmd string) string {
	if s != nil && !s.conf().Server.CommandsLogged() {
		return ""
	}
	return sessions.CutCommand(cmd)
}
