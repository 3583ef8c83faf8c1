package config

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Per-user state in a shared project home (issue 9). Every member of a
// project gets their own container on the one monorepo_home. The paths in
// user_state hold state that belongs to one person or one container (VS
// Code's server keeps lock, pid and token files in ~/.vscode-server; a home
// shared across hosts breaks it: vscode-remote-release#958, #11749): each is
// bind-mounted from <storage_root>/<project>/users/<user>/home/PATH instead.
// The git identity of [users.NAME] name/email goes into the container's
// environment, so a shared ~/.gitconfig no longer decides who committed.

// UsersDir is the directory under a project's storage that holds one
// directory per member (<storage_root>/<project>/users/<user>).
const UsersDir = "users"

// DefaultUserState is the per-user list when neither [defaults] nor the
// project set user_state: the IDE servers' state and caches.
var DefaultUserState = []string{".vscode-server", ".cursor-server", ".cache/JetBrains", ".local/share/JetBrains"}

// Limits on user_state, so a list stays a list of a few directories.
const (
	maxUserState     = 64
	maxUserStatePath = 255
	maxIdentityLen   = 256
)

// Identity is a user's git identity; either field may be empty.
type Identity struct {
	Name  string
	Email string
}

// resolveUserState is the project's list when it set one, else the
// defaults' one, else DefaultUserState.
func resolveUserState(defaults, project *[]string) *[]string {
	src := DefaultUserState
	switch {
	case project != nil:
		src = *project
	case defaults != nil:
		src = *defaults
	}
	out := slices.Clone(src)
	if out == nil {
		out = []string{}
	}
	return &out
}

// UserStatePaths returns the resolved per-user paths (DefaultUserState
// when the settings were built in code without the key).
func (s Settings) UserStatePaths() []string {
	if s.UserState == nil {
		return slices.Clone(DefaultUserState)
	}
	return slices.Clone(*s.UserState)
}

// identities returns the git identities of the members that have one.
func (c *Config) identities(members []string) map[string]Identity {
	var out map[string]Identity
	for _, m := range members {
		u := c.Users[m]
		if u == nil || (u.Name == "" && u.Email == "") {
			continue
		}
		if out == nil {
			out = map[string]Identity{}
		}
		out[m] = Identity{Name: u.Name, Email: u.Email}
	}
	return out
}

// CheckUserStatePath says what is wrong with p as a user_state entry, or
// returns "": a clean path relative to the home, inside it, without control
// characters.
func CheckUserStatePath(p string) string {
	switch {
	case p == "":
		return "an empty path"
	case len(p) > maxUserStatePath:
		return fmt.Sprintf("longer than %d bytes", maxUserStatePath)
	case !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl):
		return "control characters or invalid UTF-8"
	case path.IsAbs(p) || strings.HasPrefix(p, "~"):
		return "must be relative to the home (\".vscode-server\", not \"/home/...\" or \"~/...\")"
	case slices.Contains(strings.Split(p, "/"), ".."):
		return "must stay inside the home (no \"..\")"
	case p == ".":
		return "the home itself cannot be per-user (it is the project's shared home)"
	case path.Clean(p) != p:
		return fmt.Sprintf("not a clean path (write %q)", path.Clean(p))
	}
	return ""
}

// checkUserState returns, per bad entry, its index and what is wrong.
func checkUserState(list []string) map[int]string {
	bad := map[int]string{}
	if len(list) > maxUserState {
		bad[maxUserState] = fmt.Sprintf("more than %d paths", maxUserState)
	}
	for i, p := range list {
		if msg := CheckUserStatePath(p); msg != "" {
			bad[i] = fmt.Sprintf("%q: %s", p, msg)
			continue
		}
		for j, q := range list[:i] {
			switch {
			case q == p:
				bad[i] = fmt.Sprintf("%q is listed twice (also entry %d)", p, j)
			case strings.HasPrefix(p, q+"/"):
				bad[i] = fmt.Sprintf("%q is inside %q, which is already per-user", p, q)
			case strings.HasPrefix(q, p+"/"):
				bad[i] = fmt.Sprintf("%q contains %q (entry %d): list one of them", p, q, j)
			}
			if bad[i] != "" {
				break
			}
		}
	}
	return bad
}

func validateUserState(key string, s Settings, bad func(path, format string, args ...any)) {
	if s.UserState == nil {
		return
	}
	errs := checkUserState(*s.UserState)
	for _, i := range slices.Sorted(maps.Keys(errs)) {
		bad(fmt.Sprintf("%s.user_state.%d", key, i), "%s.user_state[%d]: %s", key, i, errs[i])
	}
}

// CheckIdentity says what is wrong with a git identity, or returns "". Git
// would strip or mangle what is refused here (newlines, "<", ">"), and a
// control character in the environment is a terminal escape waiting to
// happen in every `git log`.
func CheckIdentity(id Identity) string {
	for _, f := range []struct{ key, v string }{{"name", id.Name}, {"email", id.Email}} {
		switch {
		case len(f.v) > maxIdentityLen:
			return fmt.Sprintf("%s: longer than %d bytes", f.key, maxIdentityLen)
		case !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, unicode.IsControl):
			return fmt.Sprintf("%s %q: control characters (a newline?) or invalid UTF-8", f.key, f.v)
		case strings.ContainsAny(f.v, "<>"):
			return fmt.Sprintf("%s %q: may not contain < or >", f.key, f.v)
		case f.v != strings.TrimSpace(f.v) || (f.v != "" && strings.TrimSpace(f.v) == ""):
			return fmt.Sprintf("%s %q: leading or trailing spaces", f.key, f.v)
		}
	}
	if e := id.Email; e != "" {
		local, domain, ok := strings.Cut(e, "@")
		if !ok || local == "" || domain == "" || strings.ContainsFunc(e, unicode.IsSpace) {
			return fmt.Sprintf("email %q: want an address like \"alice@example.com\"", e)
		}
	}
	return ""
}

func validateIdentity(name string, u *User, bad func(path, format string, args ...any)) {
	if u == nil {
		return
	}
	if msg := CheckIdentity(Identity{Name: u.Name, Email: u.Email}); msg != "" {
		field, _, _ := strings.Cut(msg, ":")
		field, _, _ = strings.Cut(field, " ")
		bad("users."+name+"."+field, "users.%s.%s", name, msg)
	}
}
