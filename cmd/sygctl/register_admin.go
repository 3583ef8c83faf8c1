package main

// The admin subcommands talk to a running gateway over its admin socket.
func init() {
	register(command{name: "sessions", summary: "list, kill and review gateway sessions",
		run: func(a []string, s stdio) int { return cmdSessions(a, s.out, s.err) }})
	register(command{name: "containers", summary: "list the containers the gateway manages",
		run: func(a []string, s stdio) int { return cmdContainers(a, s.out, s.err) }})
	register(command{name: "gpus", summary: "list the host's GPUs, their health and who uses them",
		run: func(a []string, s stdio) int { return cmdGPUs(a, s.out, s.err) }})
}
