package gpu

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// containerOf is the 64-hex ID of the container pid runs in, read from
// <procRoot>/<pid>/cgroup; empty when the process is gone or not in a
// container.
func containerOf(procRoot string, pid uint32) string {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		return ""
	}
	return ContainerIDFromCgroup(string(data))
}

// ContainerIDFromCgroup finds a container ID in a /proc/PID/cgroup text: a
// path element that is the 64-hex ID (cgroupfs driver: /docker/ID) or
// ends with it as a systemd scope (docker-ID.scope, cri-containerd-ID.scope).
// The deepest match wins, so a container nested in another one is named
// for itself. It returns "" when there is none. The same shapes are what
// link/ accepts as a container's cgroup (inContainerCgroup).
func ContainerIDFromCgroup(text string) string {
	found := ""
	for line := range strings.SplitSeq(text, "\n") {
		// hierarchy-ID:controllers:path
		_, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		_, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		for elem := range strings.SplitSeq(path, "/") {
			elem = strings.TrimSuffix(elem, ".scope")
			if i := strings.LastIndexByte(elem, '-'); i >= 0 {
				elem = elem[i+1:]
			}
			if isContainerID(elem) {
				found = elem
			}
		}
	}
	return found
}

func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
