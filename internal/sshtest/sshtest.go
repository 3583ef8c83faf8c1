// Package sshtest drives the real OpenSSH client tools (ssh, scp, sftp,
// rsync) against a gateway in tests.
package sshtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Key is a client key pair on disk.
type Key struct {
	Path       string // private key, mode 0600
	Authorized string // authorized_keys line
	Signer     gossh.Signer
}

// NewSigner is a fresh ed25519 key, in memory only.
func NewSigner(t testing.TB) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// NewKey writes a fresh ed25519 key into dir.
func NewKey(t testing.TB, dir, name string) Key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + name
	return Key{Path: path, Authorized: line, Signer: signer}
}

// Client runs OpenSSH tools as one user against one gateway.
type Client struct {
	Host  string // 127.0.0.1
	Port  string
	Login string // the project
	Key   Key
	Extra []string // more -o options
	// AgentSock, when set, is the client's ssh-agent, forwarded (-A) into
	// the session; otherwise no agent is used at all.
	AgentSock string
}

// Options are the ssh options every tool gets: no config files, no known
// hosts, only this key, never a password prompt.
func (c Client) Options() []string {
	o := []string{
		"-F", "/dev/null",
		"-i", c.Key.Path,
		"-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=20",
	}
	if c.AgentSock != "" {
		o = append(o, "-o", "IdentityAgent="+c.AgentSock, "-o", "ForwardAgent=yes")
	} else {
		o = append(o, "-o", "IdentityAgent=none")
	}
	return append(o, c.Extra...)
}

// SSH returns an ssh command: ssh [opts] -p PORT LOGIN@HOST args...
// Put client flags (-t, -T, -L, -o SetEnv=...) in args before "--".
func (c Client) SSH(ctx context.Context, args ...string) *exec.Cmd {
	a := append(c.Options(), "-p", c.Port)
	var flags, remote []string
	for i, x := range args {
		if x == "--" {
			flags, remote = args[:i], args[i+1:]
			break
		}
	}
	if flags == nil && remote == nil {
		remote = args
	}
	a = append(a, flags...)
	a = append(a, c.Login+"@"+c.Host)
	a = append(a, remote...)
	return exec.CommandContext(ctx, "ssh", a...)
}

// Target is LOGIN@HOST:path for scp/rsync.
func (c Client) Target(path string) string { return c.Login + "@" + c.Host + ":" + path }

// SCP returns an scp command (sftp protocol, the OpenSSH 9 default) with
// extra flags (e.g. "-O" for the legacy protocol).
func (c Client) SCP(ctx context.Context, args ...string) *exec.Cmd {
	a := append(c.Options(), "-P", c.Port)
	return exec.CommandContext(ctx, "scp", append(a, args...)...)
}

// SFTP returns an sftp command in batch mode reading commands from batch.
func (c Client) SFTP(ctx context.Context, batch string) *exec.Cmd {
	a := append(c.Options(), "-P", c.Port, "-b", "-", c.Login+"@"+c.Host)
	cmd := exec.CommandContext(ctx, "sftp", a...)
	cmd.Stdin = strings.NewReader(batch)
	return cmd
}

// Rsync returns an rsync command using this client's ssh.
func (c Client) Rsync(ctx context.Context, args ...string) *exec.Cmd {
	e := "ssh " + strings.Join(append(c.Options(), "-p", c.Port), " ")
	return exec.CommandContext(ctx, "rsync", append([]string{"-e", e}, args...)...)
}

// Result is a finished command.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs cmd with stdin and returns its output and exit code; it fails the
// test only when the command could not be run at all.
func Run(t testing.TB, cmd *exec.Cmd, stdin []byte) Result {
	t.Helper()
	var out, errb bytes.Buffer
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run %v: %v", cmd.Args, err)
		}
		code = ee.ExitCode()
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// Must runs cmd and fails the test unless it exits 0.
func Must(t testing.TB, cmd *exec.Cmd, stdin []byte) Result {
	t.Helper()
	r := Run(t, cmd, stdin)
	if r.Code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", strings.Join(cmd.Args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r
}

// Require fails (CI) or skips the test when an OpenSSH tool is missing.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (required in CI)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
}

// String renders a result for failure messages.
func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %q\nstderr: %q", r.Code, r.Stdout, r.Stderr)
}

// StartAgent runs an ssh-agent holding k, for the test's life, and returns
// its socket (for Client.AgentSock).
func StartAgent(t testing.TB, ctx context.Context, k Key) string {
	t.Helper()
	Require(t, "ssh-agent", "ssh-add")
	dir, err := os.MkdirTemp("", "sshagent") // short: a socket path is at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	agent := exec.CommandContext(ctx, "ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	add := exec.Command("ssh-add", k.Path)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	return sock
}
