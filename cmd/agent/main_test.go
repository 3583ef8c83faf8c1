package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/link"
)

// TestRunAsSygaldry: under the name sygaldry (the mount at
// /usr/local/bin/sygaldry, or a symlink) the binary is the user's command;
// under its own name it is the agent.
func TestRunAsSygaldry(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"/usr/local/bin/sygaldry", "ports", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("sygaldry ports --json: exit %d, %s", code, errb.String())
	}
	var ls []map[string]any
	if err := json.Unmarshal(out.Bytes(), &ls); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}

	out.Reset()
	if code := run([]string{"sygaldry", "help"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "usage: sygaldry ports") {
		t.Errorf("sygaldry help: exit %d, %q", code, out.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"sygaldry-agent", "ports"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "ports"`) {
		t.Errorf("sygaldry-agent ports: exit %d, %q", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"/.sygaldry/bin/sygaldry-agent", "version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "sygaldry-agent ") {
		t.Errorf("sygaldry-agent version: exit %d, %q", code, out.String())
	}
}

// runAgentEnv makes the test binary run as sygaldry-agent (TestMain), so the
// tests can start the real command without building it.
const runAgentEnv = "SYGALDRY_TEST_RUN_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(runAgentEnv) == "1" {
		os.Exit(run(append([]string{"sygaldry-agent"}, os.Args[1:]...), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func authorizedLine(k gossh.PublicKey) string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k)))
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TCP without the gateway's key would let anyone who reaches the port in:
// the agent refuses to start, and says what is missing.
func TestServeTCPNeedsAuthorizedKey(t *testing.T) {
	t.Setenv(authorizedKeyEnv, "")
	var out, errb bytes.Buffer
	code := run([]string{"sygaldry-agent", "serve", "--listen", "tcp:127.0.0.1:0"}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "--authorized-key") {
		t.Fatalf("exit %d, %q; want non-zero and a message naming --authorized-key", code, errb.String())
	}
}

// hostKeyFile writes a fresh ed25519 host key into dir, and returns its
// path and the key.
func hostKeyFile(t *testing.T, dir string) (string, gossh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	host, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "host_key", string(pem.EncodeToMemory(block))), host
}

// Over TCP an ephemeral host key could not be pinned: refused too.
func TestServeTCPNeedsHostKey(t *testing.T) {
	t.Setenv(authorizedKeyEnv, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZ7Xz0Fv0b3sC2i9pS8bQ0D0v9bJ8gq0x0M0Q2xv1o2")
	var out, errb bytes.Buffer
	code := run([]string{"sygaldry-agent", "serve", "--listen", "tcp:127.0.0.1:0"}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "--host-key") {
		t.Fatalf("exit %d, %q; want non-zero and a message naming --host-key", code, errb.String())
	}
}

func TestServeBadAuthorizedKey(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, flag, env, want string
	}{
		{"missing file", filepath.Join(dir, "nope"), "", "no such file"},
		{"empty file", writeFile(t, dir, "empty", ""), "", "no authorized key"},
		{"garbage file", writeFile(t, dir, "garbage", "hello\n"), "", "line 1: not an authorized key"},
		{"garbage env", "", "hello", authorizedKeyEnv},
		{"two lines in env", "", authorizedLine(sshtest.NewSigner(t).PublicKey()) + "\n" + authorizedLine(sshtest.NewSigner(t).PublicKey()), "one authorized_keys line"},
	}
	hostPath, _ := hostKeyFile(t, dir)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(authorizedKeyEnv, tc.env)
			argv := []string{"sygaldry-agent", "serve", "--listen", "tcp:127.0.0.1:0", "--host-key", hostPath}
			if tc.flag != "" {
				argv = append(argv, "--authorized-key", tc.flag)
			}
			var out, errb bytes.Buffer
			if code := run(argv, &out, &errb); code == 0 || !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("exit %d, %q; want non-zero and %q", code, errb.String(), tc.want)
			}
		})
	}
}

func TestAuthorizedKeysSource(t *testing.T) {
	fileKey, envKey := sshtest.NewSigner(t).PublicKey(), sshtest.NewSigner(t).PublicKey()
	file := writeFile(t, t.TempDir(), "keys", authorizedLine(fileKey)+"\n")
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == authorizedKeyEnv {
				return v
			}
			return ""
		}
	}
	cases := []struct {
		name, path, env string
		want            gossh.PublicKey
		src             string
	}{
		{"neither", "", "", nil, ""},
		{"file", file, "", fileKey, file},
		{"env", "", authorizedLine(envKey) + " gateway\n", envKey, "$" + authorizedKeyEnv},
		{"file wins over env", file, authorizedLine(envKey), fileKey, file},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys, src, err := authorizedKeys(tc.path, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if src != tc.src {
				t.Errorf("source %q, want %q", src, tc.src)
			}
			if tc.want == nil {
				if keys != nil {
					t.Errorf("keys %v, want none", keys)
				}
				return
			}
			if len(keys) != 1 || !bytes.Equal(keys[0].Marshal(), tc.want.Marshal()) {
				t.Errorf("keys %v, want %s", keys, gossh.FingerprintSHA256(tc.want))
			}
		})
	}
}

// The real command on TCP: the gateway's key gets a working link, no
// descriptor socket is made, and SIGTERM ends it cleanly.
func TestServeTCP(t *testing.T) {
	for _, viaEnv := range []bool{false, true} {
		t.Run(map[bool]string{false: "key file", true: "key in env"}[viaEnv], func(t *testing.T) {
			dir := t.TempDir()
			client := sshtest.NewSigner(t)
			hostPath, host := hostKeyFile(t, dir)

			cmd := exec.Command(os.Args[0], "serve", "--listen", "tcp:127.0.0.1:0", "--host-key", hostPath, "--log-level", "debug")
			cmd.Dir = dir
			cmd.Env = []string{runAgentEnv + "=1", "PATH=/usr/bin:/bin", "HOME=" + dir}
			if viaEnv {
				cmd.Env = append(cmd.Env, authorizedKeyEnv+"="+authorizedLine(client.PublicKey()))
			} else {
				cmd.Args = append(cmd.Args, "--authorized-key", writeFile(t, dir, "authorized_keys", authorizedLine(client.PublicKey())+"\n"))
			}
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waited := false
			t.Cleanup(func() {
				if !waited {
					cmd.Process.Kill()
					cmd.Wait()
				}
			})
			logs := &testenv.SyncBuffer{}
			addrc := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					logs.Write(append(sc.Bytes(), '\n'))
					if _, rest, ok := strings.Cut(sc.Text(), `msg="agent serving" addr=`); ok {
						addr, _, _ := strings.Cut(rest, " ")
						select {
						case addrc <- addr:
						default:
						}
					}
				}
			}()
			var addr string
			select {
			case addr = <-addrc:
			case <-time.After(30 * time.Second):
				t.Fatalf("the agent did not start:\n%s", logs.String())
			}

			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cl, err := link.DialConn(ctx, c, host.PublicKey(), client, "test")
			if err != nil {
				t.Fatalf("link: %v\n%s", err, logs.String())
			}
			s, err := cl.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			out, err := s.Output("echo hi")
			if err != nil || string(out) != "hi\n" {
				t.Fatalf("exec: %q, %v\n%s", out, err, logs.String())
			}
			cl.Close()

			if _, err := os.Lstat(filepath.Join(dir, "fd.sock")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a descriptor socket was made beside a TCP listener: %v", err)
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			waited = true
			if err := cmd.Wait(); err != nil {
				t.Errorf("after SIGTERM: %v\n%s", err, logs.String())
			}
		})
	}
}
