package gateway

import "strings"

// acceptEnv reports whether a client may set the variable name, following
// sshd's AcceptEnv: exact names, or a prefix ending in "*". Anything else is
// refused so a client cannot inject LD_PRELOAD, BASH_ENV or PATH.
func acceptEnv(patterns []string, name string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if p == name {
			return true
		}
	}
	return false
}
