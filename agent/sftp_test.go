package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// sftpServers runs f with the agent's own sftp server and with OpenSSH's
// sftp-server, which an image that has it gets (CI installs it on the host).
func sftpServers(t *testing.T, f func(t *testing.T, server string)) {
	t.Helper()
	openssh := (&Server{}).sftpServer()
	if openssh == "" && os.Getenv("CI") == "true" {
		t.Fatal("OpenSSH's sftp-server is not installed; CI must install it (apt-get install openssh-sftp-server)")
	}
	for _, server := range []string{SFTPServerInternal, openssh} {
		if server == "" {
			t.Log("OpenSSH's sftp-server is not installed: only the agent's own is tested")
			continue
		}
		t.Run(filepath.Base(server), func(t *testing.T) {
			t.Parallel()
			f(t, server)
		})
	}
}

func TestSFTPRelativePathsLandInHome(t *testing.T) {
	t.Parallel()
	sftpServers(t, testSFTPRelativePaths)
}

func testSFTPRelativePaths(t *testing.T, server string) {
	e := startAgent(t, func(s *Server) { s.SFTPServer = server })
	c := e.dial(t)
	client, err := sftp.NewClient(c)
	must(t, err, "sftp client")
	defer client.Close()

	wd, err := client.Getwd()
	must(t, err, "getwd")
	if wd != e.home {
		t.Fatalf("sftp working directory %q, want %q", wd, e.home)
	}
	data := make([]byte, 3<<20)
	rand.Read(data)
	f, err := client.Create("up.bin")
	must(t, err, "create")
	_, err = f.Write(data)
	must(t, err, "write")
	must(t, f.Close(), "close")

	onDisk, err := os.ReadFile(filepath.Join(e.home, "up.bin"))
	must(t, err, "file not in $HOME")
	if !bytes.Equal(onDisk, data) {
		t.Fatal("uploaded content differs")
	}
	f, err = client.Open("up.bin")
	must(t, err, "open")
	back, err := io.ReadAll(f)
	f.Close()
	must(t, err, "read")
	if !bytes.Equal(back, data) {
		t.Fatal("downloaded content differs")
	}
	must(t, client.Rename("up.bin", "moved.bin"), "rename")
	must(t, client.Remove("moved.bin"), "remove")
	if _, err := client.Stat("/nonexistent-sygaldry"); err == nil {
		t.Fatal("stat of a missing file succeeded")
	}
}

// TestSFTPExitStatusBeforeClose: sftp -b and scp check the exit status of
// the subsystem; pkg/sftp's own Close would close the channel before it.
// (x/crypto's Session cannot Wait on a subsystem, so this uses a raw channel.)
func TestSFTPExitStatusBeforeClose(t *testing.T) {
	t.Parallel()
	sftpServers(t, testSFTPExitStatus)
}

func testSFTPExitStatus(t *testing.T, server string) {
	c := startAgent(t, func(s *Server) { s.SFTPServer = server }).dial(t)
	ch, reqs, err := c.OpenChannel("session", nil)
	must(t, err, "open session")
	defer ch.Close()
	ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{"sftp"}))
	if err != nil || !ok {
		t.Fatalf("subsystem sftp: ok=%v err=%v", ok, err)
	}
	// SSH_FXP_INIT version 3; like real clients, wait for the reply, then EOF.
	_, err = io.WriteString(ch, "\x00\x00\x00\x05\x01\x00\x00\x00\x03")
	must(t, err, "write init")
	hdr := make([]byte, 5)
	_, err = io.ReadFull(ch, hdr)
	must(t, err, "read version")
	if hdr[4] != 2 { // SSH_FXP_VERSION
		t.Fatalf("reply type %d, want SSH_FXP_VERSION", hdr[4])
	}
	must(t, ch.CloseWrite(), "eof")
	rest, err := io.ReadAll(ch)
	must(t, err, "read")
	if want := int(binary.BigEndian.Uint32(hdr)) - 1; len(rest) != want {
		t.Fatalf("version packet body %d bytes, want %d", len(rest), want)
	}
	var got []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r, ok := <-reqs:
			if !ok {
				if len(got) != 1 || got[0] != "exit-status 0" {
					t.Fatalf("requests before close: %q, want [exit-status 0]", got)
				}
				return
			}
			if r.Type == "exit-status" && len(r.Payload) == 4 {
				got = append(got, fmt.Sprintf("exit-status %d", binary.BigEndian.Uint32(r.Payload)))
			} else {
				got = append(got, r.Type)
			}
		case <-timeout:
			t.Fatal("channel not closed after sftp EOF")
		}
	}
}
