package config

import (
	"fmt"
	"path"
	"strings"
	"unicode"
)

// IDE servers on hosts without internet (issue 9). VS Code's bootstrap
// downloads its server from the internet on the remote side unless the
// client pushes it (remote.SSH.localServerDownload); GPU hosts often have
// no outbound internet. ide_cache names a host directory of server
// archives that every container gets read-only, so a bootstrap can unpack
// from it instead. Like a mount's source, the path is checked for shape at
// load and not for existence: the engine refuses a missing one when a
// container is created, and the user is told a mount is missing.

// CheckIDECache says what is wrong with an ide_cache value, or returns "":
// a clean absolute host path without control characters.
func CheckIDECache(p string) string {
	switch {
	case !path.IsAbs(p):
		return "must be an absolute host path"
	case strings.ContainsFunc(p, unicode.IsControl):
		return "control characters"
	case path.Clean(p) != p:
		return fmt.Sprintf("not a clean path (write %q)", path.Clean(p))
	case p == "/":
		return "the host's root directory cannot be the IDE cache"
	}
	return ""
}

func validateIDECache(key string, s Settings, bad func(path, format string, args ...any)) {
	switch {
	case s.IDECache == "":
	case key != "defaults":
		bad(key+".ide_cache", "%s.ide_cache: set the IDE cache in [defaults] (ide_cache): it is the host's, for every project", key)
	default:
		if msg := CheckIDECache(s.IDECache); msg != "" {
			bad(key+".ide_cache", "%s.ide_cache %q: %s", key, s.IDECache, msg)
		}
	}
}
