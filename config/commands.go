package config

// CommandsLogged reports server.log_commands: whether exec commands go into
// the log, the live session list and the history (default true).
func (s Server) CommandsLogged() bool { return s.LogCommands == nil || *s.LogCommands }
