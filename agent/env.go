package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// internalEnvPrefix marks variables that belong to the agent itself (the init
// marker, future knobs). They are removed from the environment of user
// processes so a shell never re-enters agent-only code paths.
const internalEnvPrefix = "SYGALDRY_AGENT_"

// workspaceEnv names the project's workspace in the container's environment
// (the gateway mounts it at /workspace); sessions start there.
const workspaceEnv = "SYGALDRY_WORKSPACE"

// defaultPath is used only when the image's environment has no PATH at all
// (sshd falls back to a compiled-in _PATH_STDPATH the same way).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// errNoPasswdEntry means the uid has no line in the passwd file: containers
// started with --user 1234 for an image that never created that user.
var errNoPasswdEntry = errors.New("no passwd entry")

// account is who processes run as, resolved once per Server: the agent never
// changes uid, so this is the passwd entry of its own uid.
type account struct {
	name  string
	home  string
	shell string
}

// lookupPasswd finds uid in a passwd(5) file. os/user without cgo reads
// /etc/passwd too, but it does not expose the login shell, which sshd uses
// for every exec.
func lookupPasswd(r io.Reader, uid int) (account, error) {
	want := strconv.Itoa(uid)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < 7 || f[2] != want {
			continue
		}
		return account{name: f[0], home: f[5], shell: f[6]}, nil
	}
	if err := sc.Err(); err != nil {
		return account{}, fmt.Errorf("read passwd: %w", err)
	}
	return account{}, fmt.Errorf("uid %d: %w", uid, errNoPasswdEntry)
}

// resolveAccount fills the account from the Server overrides, then the
// passwd file, then the environment, then fixed fallbacks, so a container
// whose uid is missing from /etc/passwd still gets a usable session.
func resolveAccount(passwdPath string, uid int, override account, getenv func(string) string) (account, error) {
	var acct account
	var lookupErr error
	if f, err := os.Open(passwdPath); err != nil {
		lookupErr = fmt.Errorf("open %s: %w", passwdPath, err)
	} else {
		acct, lookupErr = lookupPasswd(f, uid)
		f.Close()
	}
	pick := func(vals ...string) string {
		for _, v := range vals {
			if v != "" {
				return v
			}
		}
		return ""
	}
	acct.name = pick(override.name, acct.name, getenv("USER"), strconv.Itoa(uid))
	acct.home = pick(override.home, acct.home, getenv("HOME"), "/")
	acct.shell = pick(override.shell, acct.shell, "/bin/sh")
	if !filepath.IsAbs(acct.shell) {
		p, err := exec.LookPath(acct.shell)
		if err != nil {
			return acct, fmt.Errorf("login shell %q: %w", acct.shell, err)
		}
		acct.shell = p
	}
	return acct, lookupErr
}

// sessionOnlyEnv describe one SSH session; inherited by the agent (a
// developer running it from an ssh shell) they would be stale, so only the
// session itself sets them.
var sessionOnlyEnv = map[string]bool{
	"SSH_AUTH_SOCK": true, "SSH_TTY": true, "SSH_CONNECTION": true, "SSH_CLIENT": true, "SSH_ORIGINAL_COMMAND": true,
}

// baseEnviron is the agent's own environment (the image's ENV: PATH, LANG,
// CUDA variables...) without agent-internal variables.
func baseEnviron(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, internalEnvPrefix) || sessionOnlyEnv[name] {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// envList is an ordered environment where a later Set replaces an earlier
// value in place, so the result is deterministic and has no duplicates
// (a duplicate PATH is resolved differently by different libcs).
type envList struct {
	keys []string
	vals map[string]string
}

func newEnvList(base []string) *envList {
	e := &envList{vals: make(map[string]string, len(base)+8)}
	for _, kv := range base {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		e.Set(k, v)
	}
	return e
}

func (e *envList) Set(k, v string) {
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *envList) Get(k string) (string, bool) {
	v, ok := e.vals[k]
	return v, ok
}

func (e *envList) Environ() []string {
	out := make([]string, 0, len(e.keys))
	for _, k := range e.keys {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}

// sessionEnv is what the session's process gets, in sshd's order of
// precedence: the base environment, the account variables, the client's env
// requests (already filtered by the gateway's AcceptEnv allowlist), then what
// the session itself determines (TERM and SSH_TTY from the pty,
// SSH_AUTH_SOCK from agent forwarding), which the client cannot override.
func sessionEnv(base []string, acct account, requested [][2]string, session [][2]string) []string {
	e := newEnvList(base)
	e.Set("USER", acct.name)
	e.Set("LOGNAME", acct.name)
	e.Set("HOME", acct.home)
	e.Set("SHELL", acct.shell)
	if p, ok := e.Get("PATH"); !ok || p == "" {
		e.Set("PATH", defaultPath)
	}
	for _, kv := range requested {
		e.Set(kv[0], kv[1])
	}
	for _, kv := range session {
		e.Set(kv[0], kv[1])
	}
	return e.Environ()
}

// validEnvName rejects names that cannot be represented in an environment
// block (an '=' or NUL would corrupt the neighbouring variables).
func validEnvName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "=\x00")
}
