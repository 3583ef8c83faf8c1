package admin

// GET /v1/containers: the managed containers, each with why it is up and
// when it stops.

import (
	"context"
	"net/http"
	"time"

	"github.com/sygaldry/sygaldry/admin/api"
	"github.com/sygaldry/sygaldry/sessions"
)

func (s *Server) serveContainers(w http.ResponseWriter, r *http.Request) {
	if s.Containers == nil {
		writeError(w, http.StatusServiceUnavailable, "this gateway does not list containers")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	list, err := s.Containers.List(ctx)
	if err != nil {
		s.log().Error("list containers", "err", err)
		writeError(w, http.StatusBadGateway, "cannot list containers: is the Docker engine reachable? (see the gateway's log)")
		return
	}
	writeJSON(w, http.StatusOK, explain(list, s.live(), s.gpuProcesses(ctx, list), time.Now()))
}

// forwardKinds are the channel kinds that forward a port or socket.
var forwardKinds = map[string]bool{
	"direct-tcpip":                      true,
	"direct-streamlocal@openssh.com":    true,
	"forwarded-tcpip":                   true,
	"forwarded-streamlocal@openssh.com": true,
}

// explain fills in what the container manager does not know: who is
// inside (the session registry's live rows), the GPU processes of each
// container (by name), and with them "in use". The lists it returns are
// never nil.
func explain(list []api.ContainerInfo, live []sessions.Info, gpus map[string][]api.ContainerGPUProcess, now time.Time) []api.ContainerInfo {
	out := make([]api.ContainerInfo, len(list))
	for i, c := range list {
		c.Sessions = 0
		c.Connections, c.Forwards = []api.ContainerConn{}, []api.ContainerForward{}
		byConn := map[string]int{} // connection ID → index in c.Connections
		for _, in := range live {
			if in.Container != c.Name || in.Container == "" {
				continue
			}
			k, ok := byConn[in.Conn]
			if !ok {
				k = len(c.Connections)
				byConn[in.Conn] = k
				c.Connections = append(c.Connections, api.ContainerConn{Conn: in.Conn, User: in.User, RemoteAddr: in.RemoteAddr})
			}
			cc := &c.Connections[k]
			if in.LastActive.After(cc.LastActive) {
				cc.LastActive = in.LastActive
			}
			if in.Kind == sessions.KindConnection {
				continue
			}
			c.Sessions++
			cc.Channels++
			if forwardKinds[in.Kind] {
				c.Forwards = append(c.Forwards, api.ContainerForward{
					Session: in.ID, Conn: in.Conn, User: in.User, Kind: in.Kind,
					Target: in.Command, LastActive: in.LastActive,
				})
			}
		}
		for k := range c.Connections {
			c.Connections[k].IdleSeconds = max(int64(now.Sub(c.Connections[k].LastActive)/time.Second), 0)
		}
		if c.Jobs == nil {
			c.Jobs = []api.ContainerJob{}
		}
		c.GPUProcesses = []api.ContainerGPUProcess{}
		for _, g := range gpus[c.Name] {
			for _, j := range c.Jobs {
				if j.PID != 0 && uint32(j.PID) == g.PID {
					g.Command = j.Command
				}
			}
			c.GPUProcesses = append(c.GPUProcesses, g)
		}
		if len(c.Connections) > 0 && c.Stop.Status != api.StopNotRunning && c.Stop.Status != api.StopNever {
			// The registry knows of a connection the manager's count may
			// not show yet (it is being set up): in use either way.
			c.Stop.Status, c.Stop.At, c.Stop.IdleSince, c.Stop.Rechecked = api.StopInUse, nil, nil, false
		}
		out[i] = c
	}
	return out
}

// gpuProcesses reads the GPU inventory once for the listing, when some
// container runs: the processes the inventory maps to a managed container,
// by container name. nil without an inventory or GPUs.
func (s *Server) gpuProcesses(ctx context.Context, list []api.ContainerInfo) map[string][]api.ContainerGPUProcess {
	if s.GPUs == nil {
		return nil
	}
	running := false
	for _, c := range list {
		running = running || c.State == "running"
	}
	if !running {
		return nil
	}
	rep := s.GPUs.GPUs(ctx)
	out := map[string][]api.ContainerGPUProcess{}
	for _, g := range rep.GPUs {
		for _, p := range g.Processes {
			if p.Container == "" {
				continue
			}
			out[p.Container] = append(out[p.Container], api.ContainerGPUProcess{
				GPU: g.Index, UUID: g.UUID, PID: p.PID, UsedMemory: p.UsedMemory,
			})
		}
	}
	return out
}
